"""Protecting the service: TLS on its listeners and for its clients, and who may listen how."""
