"""Agents: the agent API, runtime shell, daemons, built-in roles, and pure policies (routing,
retry, breakers, deadlocks). This package is being built (issue 3); the pure policies come first."""
