"""Security of the service itself: tokenotel's own credentials and roles, who may call which
listener, and the self-audit of both in the trail."""
