"""An agent's tools in one place: its ``@tool`` methods and its MCP servers' tools, opened once
per agent process, pinned when opened, and called by name with the model's JSON arguments.

::

    async with Toolbox.open(agent) as box:
        offered = box.specs()            # what the model is told
        pins = box.pins()                # announced at registration
        outcome = await box.call("time.get_current_time", '{"timezone": "UTC"}', "t-1.t1")

Pinning: the definition of every tool (name, description, parameters) is digested when the box
opens. Before each call of an MCP tool the box lists that server's tools again and refuses the
call (status ``refused``) when the tool's digest differs from its pin, when the tool has vanished,
or when it appeared after the box opened: the operator re-registers the agent to accept the new
definitions. Listing again costs one round trip (about 3 ms to a local stdio server, measured),
small beside a model call, and needs no trust in the server announcing its changes; a server's
``tools/list_changed`` notification also re-lists at once, so :meth:`Toolbox.drift` shows a
change before anything calls the tool. A Python tool's definition is the code the process
loaded, so it cannot change under a running agent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from swarmlog.agents.tools.functions import FunctionTool, class_tools, function_tools, tool_of
from swarmlog.agents.tools.mcp import MCPConnection
from swarmlog.agents.tools.pinning import PinDiff, ToolPin, compare_pins, tool_digest
from swarmlog.agents.tools.servers import MCPServer
from swarmlog.agents.tools.specs import Invocation, ToolSpec
from swarmlog.errors import ConfigError
from swarmlog.schemas.types import TOOL_NAME_PATTERN

__all__ = ["ToolOutcome", "Toolbox", "declared_grants", "refusal_for_change"]

IDEMPOTENCY_KEY = "idempotency_key"

log = logging.getLogger(__name__)

_JOURNAL_NAME = re.compile(TOOL_NAME_PATTERN)
"""Names a journal event can carry (at most :data:`_MAX_NAME` characters)."""
_MAX_NAME = 192


def refusal_for_change(role: str = "", what: str = "") -> str:
    """The error of a call refused because its tool is not the one pinned at registration
    (``what``: how, when not a changed definition)."""
    return (
        f"{what or 'tool definition changed since registration'}: re-register the agent"
        f" (swarmlog agent restart {role or 'ROLE'})"
    )


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one tool call came to, as the journal records it."""

    status: Literal["ok", "error", "refused"]
    """``ok``; ``error``: the tool failed or its arguments were wrong (the model reads
    ``error``); ``refused``: the tool was not called (unknown, or not the pinned one)."""
    result: Any = None
    """The tool's result as JSON (``ok``)."""
    error: str = ""
    server: str = ""
    """The MCP server of the tool, ``""`` for a Python tool or an unknown name."""
    definition: str = ""
    """The pinned digest of the tool's definition (``""`` for an unknown name)."""
    duration_ms: int = 0
    replayed: bool = False
    """Answered from the call journal: an earlier attempt of the task made this call."""


@dataclass(frozen=True)
class _Pinned:
    spec: ToolSpec
    """As the model sees it (``idempotency_key`` hidden)."""
    digest: str
    server: str
    tool: str
    """The server's own name of the tool (MCP), or the function's name."""
    function: FunctionTool | None
    takes_idempotency_key: bool


class Toolbox:
    """The tools of one agent, pinned when opened (see the module's docstring)."""

    def __init__(
        self, pinned: Sequence[_Pinned], connections: Iterable[MCPConnection], role: str = ""
    ) -> None:
        self._pinned = {p.spec.name: p for p in pinned}
        self._connections = {c.server.name: c for c in connections}
        self._role = role
        self._current: dict[str, dict[str, tuple[str, ToolSpec]]] = {}
        """Per server, its tools as last listed: qualified name -> (digest, raw definition)."""
        self._validators: dict[str, Any] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        agent: object | None = None,
        *,
        functions: Sequence[Callable[..., Any]] = (),
        servers: Sequence[MCPServer] | None = None,
    ) -> AsyncIterator[Toolbox]:
        """The toolbox of ``agent``: its ``@tool`` methods, the ``functions`` given, and the
        tools of its class's ``mcp_servers`` (or of ``servers``), all started at once.

        Raises :class:`~swarmlog.errors.ToolServerError` when a server does not start or list
        its tools (the others are stopped), :class:`ConfigError` when two tools or servers
        share a name.
        """
        python = [*(function_tools(agent) if agent is not None else ()), *map(tool_of, functions)]
        declared = tuple(getattr(type(agent), "mcp_servers", ())) if servers is None else servers
        role = str(getattr(type(agent), "role", "")) if agent is not None else ""
        _no_duplicates([t.name for t in python], "tool")
        _no_duplicates([s.name for s in declared], "MCP server")
        connections = [MCPConnection(s) for s in declared]
        box = cls([_pin_function(t) for t in python], connections, role)
        for c in connections:
            c.on_list_changed = _relister(box, c.server.name)
        try:
            await _all(c.start() for c in connections)
            await _all(box._relist(c.server.name) for c in connections)
            for name, listing in box._current.items():
                box._pinned.update(
                    (q, _pin_mcp(name, q, digest, raw)) for q, (digest, raw) in listing.items()
                )
            yield box
        finally:
            await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)

    def specs(self) -> list[ToolSpec]:
        """What to offer the model: every tool as pinned, sorted by name."""
        return [self._pinned[n].spec for n in sorted(self._pinned)]

    def pins(self) -> list[ToolPin]:
        """Each tool's name and definition digest, sorted by name (for ``agent_registered``)."""
        return [ToolPin(name=n, digest=self._pinned[n].digest) for n in sorted(self._pinned)]

    def servers(self) -> list[str]:
        """The names of the MCP servers, sorted."""
        return sorted(self._connections)

    def definition_of(self, name: str) -> str:
        """The pinned digest of a tool's definition (``""``: an unknown name)."""
        found = self._pinned.get(name)
        return found.digest if found is not None else ""

    def server_of(self, name: str) -> str:
        """The MCP server of a pinned tool (``""``: a Python tool or an unknown name)."""
        found = self._pinned.get(name)
        return found.server if found is not None else ""

    async def drift(self) -> PinDiff:
        """List every server's tools again and compare them with the pins."""
        await _all(self._relist(s) for s in self._connections)
        return self.known_drift()

    def known_drift(self) -> PinDiff:
        """The tools as last listed (at the last call, or when a server announced a change)
        compared with the pins, without asking the servers."""
        current = [
            ToolPin(name=n, digest=p.digest) for n, p in self._pinned.items() if not p.server
        ]
        for listing in self._current.values():
            current.extend(ToolPin(name=q, digest=d) for q, (d, _) in listing.items())
        return compare_pins(self.pins(), current)

    async def call(self, name: str, arguments_json: str, call_id: str) -> ToolOutcome:
        """Call tool ``name`` with the model's argument text; ``call_id`` is passed to a tool
        that takes an ``idempotency_key``.

        Never raises for the tool's or the model's faults (see :class:`ToolOutcome`); raises
        :class:`~swarmlog.errors.ToolServerError` when an MCP server is gone or silent (the
        call may have happened: retrying it with the same ``call_id`` is the one at-least-once
        window), and lets a :class:`~swarmlog.errors.TaskError` from a Python tool through.
        """
        started = time.monotonic()
        pinned = self._pinned.get(name)
        outcome: Invocation | ToolOutcome
        if pinned is None:
            outcome = await self._unknown(name)
        elif pinned.function is not None:
            outcome = await pinned.function.invoke(arguments_json, call_id)
        else:
            outcome = await self._call_mcp(pinned, arguments_json, call_id)
        duration_ms = round((time.monotonic() - started) * 1000)
        if isinstance(outcome, ToolOutcome):
            return msgspec.structs.replace(outcome, duration_ms=duration_ms)
        return ToolOutcome(
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            server=pinned.server if pinned else "",
            definition=pinned.digest if pinned else "",
            duration_ms=duration_ms,
        )

    async def _call_mcp(
        self, pinned: _Pinned, arguments_json: str, call_id: str
    ) -> Invocation | ToolOutcome:
        listing = await self._relist(pinned.server)
        now = listing.get(pinned.spec.name)
        if now is None or now[0] != pinned.digest:
            gone = f"tool {pinned.spec.name} is no longer offered by its server"
            error = refusal_for_change(self._role, gone if now is None else "")
            return _refused(error, pinned.server, pinned.digest)
        try:
            arguments = self._arguments(pinned, arguments_json)
        except ValueError as e:
            return Invocation("error", error=str(e))
        if pinned.takes_idempotency_key:
            arguments[IDEMPOTENCY_KEY] = call_id
        return await self._connections[pinned.server].call(pinned.tool, arguments)

    def _arguments(self, pinned: _Pinned, arguments_json: str) -> dict[str, Any]:
        """The model's argument text as a map checked against the tool's schema (so the model
        reads the same kind of error for an MCP tool as for a Python one)."""
        name = pinned.spec.name
        try:
            arguments = msgspec.json.decode(arguments_json.strip() or "{}")
        except msgspec.DecodeError as e:
            raise ValueError(f"the arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(arguments, dict):
            raise ValueError(f"the arguments of {name} must be a JSON object")
        arguments.pop(IDEMPOTENCY_KEY, None)  # the model is never the one to choose it
        error = self._validator(pinned).best_match(arguments)
        if error is not None:
            raise ValueError(
                f"the arguments of {name} do not match its parameters: {error.message}"
                f" - at {error.json_path}"
            )
        return dict(arguments)

    def _validator(self, pinned: _Pinned) -> Any:
        found = self._validators.get(pinned.spec.name)
        if found is None:
            found = _Validator(pinned.spec.parameters)
            self._validators[pinned.spec.name] = found
        return found

    async def _unknown(self, name: str) -> ToolOutcome:
        server, _, tool = name.partition(".")
        if tool and server in self._connections:
            listing = await self._relist(server)
            if name in listing:  # appeared since the box opened
                late = f"tool {name} appeared after registration"
                return _refused(refusal_for_change(self._role, late), server, "")
        offered = ", ".join(sorted(self._pinned)) or "none"
        return _refused(f"unknown tool {name!r}: the tools of this agent are {offered}", "", "")

    async def _relist(self, server: str) -> dict[str, tuple[str, ToolSpec]]:
        listed = await self._connections[server].list_tools()
        listing = {}
        for raw in listed:
            name = f"{server}.{raw.name}"
            if len(name) > _MAX_NAME or not _JOURNAL_NAME.fullmatch(name):
                # Its calls could not be journaled (the events' tool names are bounded): the
                # tool is not offered at all, rather than offered and then failing every call.
                log.warning(
                    "%s: tool %r skipped: not a tool name swarmlog can journal", server, raw.name
                )
                continue
            qualified = ToolSpec(
                name=f"{server}.{raw.name}", description=raw.description, parameters=raw.parameters
            )
            listing[qualified.name] = (tool_digest(qualified), qualified)
        self._current[server] = listing
        return listing


class _Validator:
    """A JSON Schema check of arguments; a schema the validator cannot use checks nothing (the
    server still checks its own arguments)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        import jsonschema

        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._check: Any = cls(schema)
        except jsonschema.SchemaError:
            self._check = None

    def best_match(self, instance: dict[str, Any]) -> Any:
        import jsonschema

        if self._check is None:
            return None
        return jsonschema.exceptions.best_match(self._check.iter_errors(instance))


def declared_grants(agent_cls: type) -> tuple[list[str], list[str]]:
    """What an agent class declares it uses: its ``@tool`` method names and its MCP server names
    (the defaults of its credential's grants at ``agent start``), each sorted."""
    tools = sorted({t.name for t in class_tools(agent_cls)})
    servers = sorted({s.name for s in getattr(agent_cls, "mcp_servers", ())})
    return tools, servers


def _pin_function(function: FunctionTool) -> _Pinned:
    return _Pinned(
        function.spec,
        tool_digest(function.spec),
        "",
        function.name,
        function,
        function.takes_idempotency_key,
    )


def _pin_mcp(server: str, qualified: str, digest: str, raw: ToolSpec) -> _Pinned:
    schema = dict(raw.parameters)
    properties = dict(schema.get("properties") or {})
    takes_key = IDEMPOTENCY_KEY in properties
    if takes_key:
        properties.pop(IDEMPOTENCY_KEY)
        schema["properties"] = properties
        required = [r for r in schema.get("required") or () if r != IDEMPOTENCY_KEY]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
    shown = ToolSpec(name=qualified, description=raw.description, parameters=schema)
    return _Pinned(shown, digest, server, qualified.partition(".")[2], None, takes_key)


def _refused(error: str, server: str, definition: str) -> ToolOutcome:
    return ToolOutcome(status="refused", error=error, server=server, definition=definition)


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two {what}s are named {name!r}: give one another name")
        seen.add(name)


def _relister(box: Toolbox, server: str) -> Callable[[], Any]:
    async def relist() -> None:
        await box._relist(server)

    return relist


async def _all(steps: Iterable[Any]) -> None:
    """Run the steps at once; raise the first failure once all are done (none left running)."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
