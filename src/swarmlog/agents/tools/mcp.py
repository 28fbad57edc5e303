"""The MCP client: a connection to one of an agent's MCP servers (declared by
:class:`~swarmlog.agents.tools.servers.MCPServer`) over the official ``mcp`` SDK, stdio or
streamable HTTP.

A stdio server is the agent's child process, started when its toolbox opens and stopped when it
closes; it inherits only the SDK's short list of harmless variables (``PATH``, ``HOME``, ...) and
the server's ``env``, never the agent's own environment (its keys). The SDK is imported only when
a connection starts, so an agent without MCP servers never loads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from swarmlog.agents.tools.servers import MCPServer
from swarmlog.agents.tools.specs import Invocation, ToolSpec
from swarmlog.errors import ToolServerError

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.client.session import IncomingMessage
    from mcp.types import CallToolResult

__all__ = ["MCPConnection"]

log = logging.getLogger(__name__)

_LIST_CHANGED = "notifications/tools/list_changed"


class MCPConnection:
    """One live connection to an MCP server.

    The SDK's transports and session are anyio contexts that must be entered and left by one
    task; a connection keeps them in a task of its own, so the toolbox can start its servers at
    once and be opened and closed from any task. Calls may come from several tasks at a time.
    """

    def __init__(
        self,
        server: MCPServer,
        on_list_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.server = server
        self.on_list_changed = on_list_changed
        """Called when the server says its tool list changed (the toolbox re-lists)."""
        self.list_changed_notices = 0
        self._session: ClientSession | None = None
        self._closing = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start (stdio) or reach (HTTP) the server and initialise the session;
        :class:`ToolServerError` when it does not come up within its timeout."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._holder = asyncio.create_task(self._hold(ready), name=f"mcp:{self.server.name}")
        try:
            # a backstop: the session's own timeout ends a silent start first
            await asyncio.wait_for(asyncio.shield(ready), self.server.timeout + 5.0)
        except TimeoutError:
            await self.close()
            raise self._failure(TimeoutError(), "when starting") from None
        except BaseException:
            await self.close()
            raise
        finally:
            if ready.done() and not ready.cancelled():
                ready.exception()  # seen here, not reported as never retrieved

    async def close(self) -> None:
        """End the session; a stdio server is stopped (stdin closed, then terminated)."""
        self._closing.set()
        if self._holder is not None:
            # the SDK bounds a stdio server's shutdown (about 4 s at worst); this bounds ours
            done, _ = await asyncio.wait({self._holder}, timeout=10.0)
            if not done:
                self._holder.cancel()
                await asyncio.gather(self._holder, return_exceptions=True)
            self._holder = None

    async def list_tools(self) -> list[ToolSpec]:
        """The server's tools now, by their own (unqualified) names, every page of the list."""
        from mcp.types import PaginatedRequestParams

        session = self._live()
        specs: list[ToolSpec] = []
        cursor: str | None = None
        while True:
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            try:
                page = await session.list_tools(params=params)
            except Exception as e:
                raise self._failure(e, "when listing its tools") from None
            specs.extend(
                ToolSpec(name=t.name, description=t.description or "", parameters=t.input_schema)
                for t in page.tools
            )
            cursor = page.next_cursor
            if not cursor:
                return specs

    async def call(self, tool: str, arguments: dict[str, Any]) -> Invocation:
        """Call one of the server's tools. The tool's own failure (``isError``, a refused
        argument) is an ``error`` outcome; a server that is gone or silent raises
        :class:`ToolServerError` (the call may or may not have happened)."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        session = self._live()
        try:
            result = await session.call_tool(tool, arguments)
        except MCPError as e:
            if e.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                raise self._failure(e, f"when calling {tool}") from None
            return Invocation("error", error=f"{self.server.name}.{tool}: {e.message}")
        except Exception as e:
            if _transport_gone(e):
                raise self._failure(e, f"when calling {tool}") from None
            # the SDK checks a result against the tool's output schema: a RuntimeError
            return Invocation("error", error=f"{self.server.name}.{tool}: {_leaf(e)}")
        return _invocation(result)

    def _live(self) -> ClientSession:
        if self._session is None:
            raise ToolServerError(
                self.server.name, f"MCP server {self.server.name} is not connected"
            )
        return self._session

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self._connect() as session:
                self._session = session
                ready.set_result(None)
                await self._closing.wait()
        except asyncio.CancelledError:
            ready.cancel()
            raise
        except BaseException as e:
            if not ready.done():
                ready.set_exception(self._failure(e, "when starting"))
            else:
                log.warning("MCP server %s: connection ended: %s", self.server.name, _leaf(e))
        finally:
            self._session = None

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[ClientSession]:
        try:
            from mcp import ClientSession
        except ImportError:
            raise ToolServerError(
                self.server.name,
                f"MCP server {self.server.name} needs the MCP SDK: pip install 'swarmlog[mcp]'",
            ) from None

        server = self.server
        async with AsyncExitStack() as stack:
            if server.command:
                from mcp import StdioServerParameters, stdio_client

                params = StdioServerParameters(
                    command=server.command[0],
                    args=list(server.command[1:]),
                    env=dict(server.env) or None,
                    cwd=server.cwd or None,
                )
                read, write = await stack.enter_async_context(stdio_client(params))
            else:
                import httpx2
                from mcp.client.streamable_http import streamable_http_client

                # the SDK's own defaults: a long read timeout, as the server may hold a stream
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=dict(server.headers),
                        timeout=httpx2.Timeout(30.0, read=300.0),
                    )
                )
                read, write = await stack.enter_async_context(
                    streamable_http_client(server.url, http_client=http)
                )
            session = await stack.enter_async_context(
                ClientSession(
                    read,
                    write,
                    read_timeout_seconds=server.timeout,
                    message_handler=self._on_message,
                )
            )
            await session.initialize()
            yield session

    async def _on_message(self, message: IncomingMessage) -> None:
        if getattr(message, "method", None) != _LIST_CHANGED:
            return
        self.list_changed_notices += 1
        if self.on_list_changed is not None:
            try:
                await self.on_list_changed()
            except Exception as e:  # the next call re-lists anyway
                log.warning("MCP server %s: re-listing its tools failed: %s", self.server.name, e)

    def _failure(self, error: BaseException, doing: str) -> ToolServerError:
        if isinstance(error, ToolServerError):
            return error
        where = f"MCP server {self.server.name} ({self.server.describe()})"
        if _timed_out(error):
            return ToolServerError(
                self.server.name,
                f"{where} did not answer within {self.server.timeout:g}s {doing}: check that it"
                " is an MCP server and is not overloaded",
            )
        return ToolServerError(self.server.name, f"{where} failed {doing}: {_leaf(error)}")


def _invocation(result: CallToolResult) -> Invocation:
    """A ``CallToolResult`` as JSON: its structured content when it has one, else its text."""
    blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    texts = [str(b["text"]) for b in blocks if b.get("type") == "text"]
    if result.is_error:
        return Invocation("error", error="\n".join(texts) or "the tool failed and said nothing")
    if result.structured_content is not None:
        return Invocation("ok", result=result.structured_content)
    if len(texts) == len(blocks):
        return Invocation("ok", result="\n".join(texts))
    return Invocation("ok", result=blocks)  # images, audio, resources: their maps as sent


def _leaf(error: BaseException) -> str:
    """The first real error inside the task groups' exception groups, as one line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    message = getattr(error, "message", None)  # an MCPError's str() is its args tuple
    text = message if isinstance(message, str) and message else str(error)
    return " ".join((text or type(error).__name__).split())


def _transport_gone(error: BaseException) -> bool:
    import anyio

    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return isinstance(
        error, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream | OSError
    )


def _timed_out(error: BaseException) -> bool:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return True
    from mcp.types import REQUEST_TIMEOUT

    return getattr(error, "code", None) == REQUEST_TIMEOUT
