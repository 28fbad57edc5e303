"""swarmlog as OS processes: an agent's session (own key, credential, login), the Landlock
sandbox, the entry points ``swarmlog agent run`` calls (a worker replica or a built-in role), and
bring-up (:func:`~swarmlog.agents.host.bringup.bring_up`, what ``swarmlog up`` runs: the server,
the broker's logins, the projector and the built-in roles, in order).

The one part of :mod:`swarmlog.agents` that reads the data dir (the agent's own key files,
the running server's address through :mod:`swarmlog.control`). Imported by the CLI, the harness,
the public API (``bring_up``) and tests.
"""
