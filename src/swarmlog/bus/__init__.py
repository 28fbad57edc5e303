"""The event bus: NATS JetStream, embedded server lifecycle and client."""
