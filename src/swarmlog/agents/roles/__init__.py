"""The built-in roles: the router, the conductor (and supervisor), the watchdog, and ``noop``.

Each is a thin shell over :mod:`swarmlog.agents.policy`: it reads the projections, asks a pure
function what to do and publishes it. Imports agents, bus, projections and schemas; imported by
:mod:`swarmlog.agents.host` (which runs them), the harness and the tests.
"""
