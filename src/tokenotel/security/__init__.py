"""Security of the service itself: TLS on its listeners and for its clients, tokenotel's own
credentials and roles, who may call which listener and listen how, and the self-audit of both
in the trail."""
