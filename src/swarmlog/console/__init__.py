"""The web console: people watch and steer a running system from a browser.

Server-rendered pages (Starlette, Jinja templates) over the operator's
:class:`~swarmlog.control.client.Client`: workflows, a workflow's plan as a live graph, a task's
whole history with who signed each event and whether it verified, its conversation and calls,
agents with kill and revive, the escalation desk, budgets and the audit status. Pages refresh
themselves when the log moves (:mod:`swarmlog.console.live`, server-sent events); the one script
is a vendored htmx. Who may use it is :mod:`swarmlog.console.auth`; serving it is
:mod:`swarmlog.console.server`.
"""

from swarmlog.console.app import console_app
from swarmlog.console.server import login_url, serve

__all__ = ["console_app", "login_url", "serve"]
