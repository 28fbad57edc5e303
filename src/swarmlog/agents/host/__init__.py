"""An agent as an OS process: its session (own key, credential, login), the Landlock sandbox,
and the entry points ``swarmlog agent run`` calls (a worker replica or a built-in role).

The one part of :mod:`swarmlog.agents` that reads the data dir (the agent's own key files,
the running server's address through :mod:`swarmlog.control`). Imported by the CLI and tests.
"""
