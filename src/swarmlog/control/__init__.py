"""The operator's control plane: the key store, issuing credentials, the broker's logins, kill
switches, daemons, snapshots, the running system (server address, projector, reading
projections) and cluster configuration.

The imperative shell the CLI calls; it holds no domain logic of its own. Imports schemas, bus,
projections and agents; imported by the CLI, the harness, ``agents.host`` and the tests.
"""
