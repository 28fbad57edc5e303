"""The console's pages and actions: a Starlette app over the operator's client.

Every page is rendered on the server from the projections (through :class:`Client`, the same
reads as the CLI's views), escaped by Jinja's autoescape: what agents wrote (outputs, errors,
conversations) is text on the page, never markup. The pages' ``#live`` region fetches itself
again when the feed (``/live``) says the log moved. Actions are plain HTML forms that POST and
are answered with a redirect; each publishes operator-signed events exactly as the CLI's
``kill``, ``revive`` and ``escalations resolve`` do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from swarmlog.config import Settings
from swarmlog.console.auth import (
    cookie_name,
    host_allowed,
    request_is_same_origin,
    session_value,
    token_matches,
)
from swarmlog.console.live import Hub
from swarmlog.control.checks import check_name
from swarmlog.control.client import Client
from swarmlog.control.daemons import daemon_names, read_daemon
from swarmlog.control.escalations import ACTIONS
from swarmlog.control.keystore import KeyStore
from swarmlog.control.killswitches import pull, release
from swarmlog.control.records import (
    ESCALATION_OPTIONS,
    TASK_STATUSES,
    TaskDetail,
    WorkflowDetail,
)
from swarmlog.control.system import AGENT_DAEMON_PREFIX
from swarmlog.errors import SwarmlogError
from swarmlog.projections.streamchain import Checkpoint, StreamChain, verify_checkpoint
from swarmlog.rendering.console import ago, when
from swarmlog.rendering.conversation import conversation, turn_text
from swarmlog.rendering.svg import graph_svg
from swarmlog.schemas.types import AgentId, EventId

__all__ = ["ConsoleState", "console_app"]

_HERE = Path(__file__).parent
_OPEN_PATHS = frozenset({"/login", "/metrics", "/healthz"})
"""Reachable without a session: the login, the metrics scrape, a probe (and the vendored files
under ``/static/``)."""

_SECURITY_HEADERS = {
    # No script but our own files, no inline script, no framing, nothing sent elsewhere.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it a browser sends ``Origin: null`` with the console's own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass
class ConsoleState:
    """What the app's handlers share: the client, the settings, the token, where it listens."""

    client: Client
    settings: Settings
    token: str
    host: str
    port: int = 0
    """Set once the server is bound (port 0 asks for any free one)."""
    hub: Hub | None = None
    chain: StreamChain | None = None
    """The stream chain as far as the audit page has computed it (extended, never redone)."""


def _when(ns: Any, now_ns: int | None = None) -> str:
    """Nanoseconds since the epoch as the CLI's tables show them (ISO-8601 in UTC with how
    long ago), so the two say it alike."""
    if not isinstance(ns, int) or ns <= 0:
        return ""
    return when(ns, now_ns or time.time_ns())


def _duration(start: Any, end: Any) -> str:
    if not isinstance(start, int) or not start:
        return ""
    stop = end if isinstance(end, int) and end else time.time_ns()
    return ago((stop - start) / 1e9)


def _pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


_templates = Jinja2Templates(directory=str(_HERE / "templates"))
_templates.env.filters["when"] = _when
_templates.env.filters["pretty"] = _pretty
_templates.env.globals["duration"] = _duration


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _page(request: Request, name: str, **context: Any) -> Response:
    context.setdefault("drawn_at", getattr(request.state, "drawn_at", 0))
    return _templates.TemplateResponse(
        request, name, {"flash": request.query_params.get("done"), **context}
    )


def _problem(request: Request, status: int, message: str) -> Response:
    return _templates.TemplateResponse(
        request, "problem.html", {"message": message, "flash": None}, status_code=status
    )


def _back(path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={quote(message)}", status_code=303)


# --- the guard -------------------------------------------------------------------------------


async def _guard(request: Request, call_next: RequestResponseEndpoint) -> Response:
    state = _state(request)
    # The last change the feed told before this page's queries: the page's feed redraws it
    # if another is told before the browser connects (see swarmlog.console.live).
    request.state.drawn_at = state.hub.last_told if state.hub is not None else 0
    host = request.headers.get("host")
    if not host_allowed(host, state.host, state.port):
        return PlainTextResponse("this console answers only at its own address", 421)
    path = request.url.path
    if path not in _OPEN_PATHS and not path.startswith("/static/"):
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        cookie = request.cookies.get(cookie_name(state.port))
        by_cookie = cookie is not None and token_matches(session_value(state.token), cookie)
        if not by_cookie and not token_matches(state.token, bearer or None):
            return _problem(
                request,
                401,
                "Open the link `swarmlog console --url` prints: it logs this browser in.",
            )
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and by_cookie and not request_is_same_origin(request.headers, host or ""):
            return PlainTextResponse("refused: this request did not come from the console", 403)
    response = await call_next(request)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def login(request: Request) -> Response:
    """``/login?token=T``: a session for this browser, then the workflows."""
    state = _state(request)
    if not token_matches(state.token, request.query_params.get("token")):
        return _problem(request, 401, "That link's token is not this console's.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        cookie_name(state.port),
        session_value(state.token),
        httponly=True,
        samesite="strict",
        path="/",
    )
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def live(request: Request) -> Response:
    """The feed of ``changed`` events (server-sent events) pages refresh on."""
    hub = _state(request).hub
    if hub is None:
        return PlainTextResponse("no live feed", 503)
    given = request.query_params.get("drawn_at", "")
    drawn_at = int(given) if given.isdecimal() and len(given) < 20 else None
    return StreamingResponse(
        hub.feed(drawn_at),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


# --- pages -----------------------------------------------------------------------------------

_TOKENS_SQL = (
    "SELECT workflow_id, sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0))"
    " AS tokens FROM model_calls GROUP BY workflow_id"
)


async def workflows(request: Request) -> Response:
    client = _state(request).client
    wanted = request.query_params.get("status") or ""
    rows = await client.workflows()
    if wanted:
        rows = [r for r in rows if r.status == wanted]
    rows.sort(key=lambda r: r.submitted_at or 0, reverse=True)
    tokens = {r["workflow_id"]: r["tokens"] for r in (await client.query(_TOKENS_SQL)).rows}
    return _page(
        request,
        "workflows.html",
        workflows=rows,
        tokens=tokens,
        wanted=wanted,
        statuses=("running", "succeeded", "failed", "cancelled"),
    )


async def workflow(request: Request) -> Response:
    client = _state(request).client
    workflow_id = check_name(request.path_params["workflow_id"], "workflow id")
    detail = await client.show(workflow_id)
    if not isinstance(detail, WorkflowDetail):
        return RedirectResponse(f"/tasks/{quote(workflow_id)}", status_code=303)
    nodes = [msgspec.to_builtins(n) for n in detail.nodes]
    edges = [list(e) for e in detail.edges]
    tasks = await client.tasks(workflow_id=workflow_id)
    escalations = await client.escalations(workflow_id=workflow_id)
    return _page(
        request,
        "workflow.html",
        wf=detail.workflow,
        graph=graph_svg(nodes, edges),
        tasks=tasks,
        escalations=escalations,
    )


async def task(request: Request) -> Response:
    client = _state(request).client
    task_id = check_name(request.path_params["task_id"], "task id")
    detail = await client.show(task_id)
    if not isinstance(detail, TaskDetail):
        return RedirectResponse(f"/workflows/{quote(task_id)}", status_code=303)
    events = [e async for e in client.events(task_id=task_id)]
    turns = [(*turn_text(t), t["kind"]) for t in conversation(await client.journal(task_id))]
    calls = await client.query(
        "SELECT 'model' AS kind, call_index, call_id, model AS what, status, prompt_tokens,"
        " completion_tokens, duration_ms FROM model_calls"
        f" WHERE task_id = '{task_id}'"
        " UNION ALL SELECT 'tool', call_index, call_id, tool, status, NULL, NULL, duration_ms"
        f" FROM tool_calls WHERE task_id = '{task_id}' ORDER BY call_index, kind"
    )
    return _page(
        request,
        "task.html",
        task=detail.task,
        crash=detail.crash,
        events=events,
        turns=turns,
        calls=calls.rows,
    )


async def agents(request: Request) -> Response:
    state = _state(request)
    client = state.client
    rows = await client.agents()
    breakers = await client.query(
        "SELECT circuit, state, reason, changed_at FROM breakers ORDER BY circuit"
    )
    switches = await client.query(
        "SELECT target, reason FROM kill_switches WHERE active ORDER BY target"
    )
    restarts = {
        name.removeprefix(AGENT_DAEMON_PREFIX): info.restarts
        for name in daemon_names(state.settings.run_dir)
        if name.startswith(AGENT_DAEMON_PREFIX)
        and (info := read_daemon(state.settings.run_dir, state.settings.logs_dir, name))
    }
    replicas: dict[str, int] = {}
    for row in rows:
        if row.status == "registered" and row.role:
            replicas[row.role] = replicas.get(row.role, 0) + 1
    return _page(
        request,
        "agents.html",
        agents=rows,
        breakers=breakers.rows,
        switches=switches.rows,
        replicas=replicas,
        restarts=restarts,
    )


async def escalations(request: Request) -> Response:
    client = _state(request).client
    everything = request.query_params.get("all") == "1"
    rows = await client.escalations(include_resolved=everything)
    return _page(request, "escalations.html", escalations=rows, everything=everything)


async def escalation(request: Request) -> Response:
    client = _state(request).client
    escalation_id = check_name(request.path_params["escalation_id"], "escalation id", kind=EventId)
    detail = await client.escalation(escalation_id)
    return _page(
        request,
        "escalation.html",
        e=detail.escalation,
        options=detail.options,
        descriptions=ESCALATION_OPTIONS,
    )


async def budgets(request: Request) -> Response:
    return _page(request, "budgets.html", budgets=await _state(request).client.budgets())


async def audit(request: Request) -> Response:
    state = _state(request)
    client = state.client
    live_state = await client.projection_state()
    quarantine = await client.query(
        "SELECT reason, count(*) AS n, max(seq) AS last_seq FROM quarantine"
        " GROUP BY reason ORDER BY n DESC"
    )
    breaks = (await client.query("SELECT count(*) AS n FROM chain_breaks")).rows
    state.chain = await _extend_chain(client, state.chain)
    return _page(
        request,
        "audit.html",
        position=live_state.position,
        state_hash=live_state.state_hash,
        quarantine=quarantine.rows,
        chain_breaks=breaks[0]["n"] if breaks else 0,
        chain=state.chain,
        checkpoint=_last_checkpoint(state.settings),
    )


async def _extend_chain(client: Client, chain: StreamChain | None) -> StreamChain:
    """The stream chain up to the stream's end, going on from where it was last computed."""
    chain = chain or StreamChain()
    async for batch in client.messages(chain.position + 1):
        for message in batch:
            chain.add(message.seq, message.data)
    return chain


def _last_checkpoint(settings: Settings) -> dict[str, Any] | None:
    """The newest checkpoint file in the data dir, and whether the operator's signature holds."""
    files = sorted(settings.checkpoints_dir.glob("checkpoint-*.json"))  # by zero-padded seq
    if not files:
        return None
    path = files[-1]
    try:
        found = msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return {"path": str(path), "problem": str(exc)}
    problem = None
    try:
        verify_checkpoint(found, KeyStore(settings.keys_dir).operator_public_key())
    except SwarmlogError as exc:
        problem = str(exc)
    return {"path": str(path), "checkpoint": found, "problem": problem}


# --- actions ---------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def kill(request: Request) -> Response:
    state = _state(request)
    agent_id = check_name(request.path_params["agent_id"], "agent id", kind=AgentId)
    reason = (await _form(request)).get("reason", "").strip() or "killed from the console"
    await pull(state.settings, agent_id=agent_id, reason=reason[:4096])
    return _back("/agents", f"killed {agent_id}")


async def revive(request: Request) -> Response:
    state = _state(request)
    agent_id = check_name(request.path_params["agent_id"], "agent id", kind=AgentId)
    await release(state.settings, agent_id=agent_id)
    return _back("/agents", f"revived {agent_id}")


async def resolve(request: Request) -> Response:
    client = _state(request).client
    escalation_id = check_name(request.path_params["escalation_id"], "escalation id", kind=EventId)
    form = await _form(request)
    action = form.get("action", "")
    if action not in ACTIONS:
        return _problem(request, 400, f"choose one of {', '.join(ACTIONS)}")
    done = await client.resolve_escalation(
        escalation_id,
        action=action if action in ("retry", "cancel") else None,
        role=form.get("role", "").strip() or None if action == "reassign" else None,
        answer=form.get("answer", "") if action == "answer" else None,
        note=form.get("note", "").strip()[:4096],
    )
    return _back("/escalations", f"resolved {escalation_id} ({done.action}) at seq {done.seqs[0]}")


def _errors(handler: Callable[[Request], Awaitable[Response]]) -> Any:
    """A handler whose swarmlog errors (bad ids, refusals) become a page that says why."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SwarmlogError as exc:
            return _problem(request, 400, str(exc))

    return guarded


def console_app(state: ConsoleState, *, metrics: ASGIApp | None = None) -> Starlette:
    """The console's ASGI app over ``state``; ``metrics`` is mounted at ``/metrics``. The live
    feed answers once ``state.hub`` is set (:func:`~swarmlog.console.server.serve` starts it
    when the server listens)."""

    page = _errors
    routes: list[Route | Mount] = [
        Route("/", page(workflows)),
        Route("/login", login),
        Route("/healthz", healthz),
        Route("/live", live),
        Route("/workflows/{workflow_id}", page(workflow)),
        Route("/tasks/{task_id}", page(task)),
        Route("/agents", page(agents)),
        Route("/agents/{agent_id}/kill", page(kill), methods=["POST"]),
        Route("/agents/{agent_id}/revive", page(revive), methods=["POST"]),
        Route("/escalations", page(escalations)),
        Route("/escalations/{escalation_id}", page(escalation)),
        Route("/escalations/{escalation_id}/resolve", page(resolve), methods=["POST"]),
        Route("/budgets", page(budgets)),
        Route("/audit", page(audit)),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", metrics))  # a Mount would redirect /metrics to /metrics/
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_guard)],
    )
    app.state.console = state
    _templates.env.globals["task_statuses"] = TASK_STATUSES
    return app
