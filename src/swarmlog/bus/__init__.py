"""The event bus: ports (Protocols) and their adapters (NATS JetStream, in memory), the subject
grammar, queues, broker permissions, request/reply, and the embedded nats-server with the OS
process plumbing it shares with the daemons.

Imports schemas only; imported by everything above it. The adapters are the only modules of
swarmlog (with projections' store and service) that import nats.
"""
