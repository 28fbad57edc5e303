"""The errors swarmlog raises.

Every error derives from one root, :class:`SwarmlogError`, carries a stable ``code`` and a message
that says what happened and what to do next (an error about one argument names it in
``parameter``, for a front end to say which of its options that is). The CLI prints
``str(error)`` as one line and exits 2 for usage and environment errors.

::

    SwarmlogError
    ├── ConfigError            bad option, missing data dir, bad namespace
    ├── KeyStoreError          operator key or agent credential missing or unreadable
    ├── SchemaError            a payload or event does not conform (names the field path)
    │   └── PlanError          a workflow's plan or settings must not be used (``reason``)
    ├── VerificationError      a signature or credential does not check out
    ├── BusError               the log (NATS JetStream) is unreachable or refused an operation
    │   ├── ServerError        the embedded nats-server could not start or stop
    │   ├── BusyError          a service has as much of this caller's work as it takes (retry)
    │   └── ConcurrencyConflict  an optimistic-concurrency append lost the race (retry)
    ├── StoreError             the DuckDB projection file cannot be opened or written
    │   ├── StoreBusy          the projector owns the file: ask it, not the file
    │   └── RowExists          a row a batch presumed new is in the file (the batch is refolded)
    ├── QueryError             a query is not a single read-only SELECT over the projections
    │   ├── QueryTimeout       a query ran past its time budget and was stopped
    │   └── ProjectorDown      no projector answers and there is no file to read instead
    ├── ModelError             a model call failed (``retryable``: rate limit, 5xx, timeout)
    ├── ToolServerError        an MCP server could not be started, reached or answered in time
    ├── WaitTimeout            a workflow or task did not end in time (``reasons``: why not)
    │   └── Stuck              ... nor will it by itself: the wait gave up early (``blocked``)
    └── TaskError              an agent's handler fails its task (its own ``code``, ``retryable``)

:class:`TaskError` is the one an agent author raises; its ``code`` is the handler's own stable
code (``empty_input``), not an ``SWL`` number, and ``str()`` of it is just its message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BusError",
    "BusyError",
    "ConcurrencyConflict",
    "ConfigError",
    "KeyStoreError",
    "ModelError",
    "PlanError",
    "ProjectorDown",
    "QueryError",
    "QueryTimeout",
    "RowExists",
    "SchemaError",
    "ServerError",
    "StoreBusy",
    "StoreError",
    "Stuck",
    "SwarmlogError",
    "TaskError",
    "ToolServerError",
    "VerificationError",
    "WaitTimeout",
]


class SwarmlogError(Exception):
    """Root of every error swarmlog raises on purpose."""

    code = "SWL000"

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        # ``class ConfigError(SwarmlogError, code="SWL100")``: the code beside the name it
        # belongs to; a subclass that names none shares its parent's.
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        """The argument at fault, by its name in the library (``agent_id``), when one is: a
        front end (the CLI) says which of its own options that is."""

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConfigError(SwarmlogError, code="SWL100"):
    """An option, environment variable or data directory is not usable."""


class KeyStoreError(SwarmlogError, code="SWL110"):
    """A key or credential on disk is missing, unreadable or has unsafe permissions."""


class SchemaError(SwarmlogError, code="SWL200"):
    """Data does not conform to the event schema; ``path`` names the offending field."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


class PlanError(SchemaError):
    """A plan that must not be used, with the reason (``reason``: a stable short code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class VerificationError(SwarmlogError, code="SWL210"):
    """A signature, credential or permission check failed; ``reason`` is a stable reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BusError(SwarmlogError, code="SWL300"):
    """The event log is unreachable or refused an operation."""


class ServerError(BusError, code="SWL310"):
    """The embedded nats-server could not be started, reached or stopped."""


class ConcurrencyConflict(BusError, code="SWL320"):
    """An append with an expected sequence lost the race; re-read the aggregate and retry."""

    def __init__(self, subject: str, expected: int, message: str = "") -> None:
        super().__init__(
            message
            or f"optimistic concurrency conflict on {subject}: expected last sequence {expected};"
            " re-read the aggregate and retry"
        )
        self.subject = subject
        self.expected = expected


class StoreError(SwarmlogError, code="SWL400"):
    """The DuckDB projection cannot be opened or written."""


class StoreBusy(StoreError, code="SWL401"):
    """A projector holds (or is opening) the projection file, so a reader may not open it."""


class RowExists(StoreError, code="SWL402"):
    """A row a batch presumed new is in the projection file (an offer repeated a task id):
    nothing of the batch was written, and the projector folds it again, looking the row up."""


class QueryError(SwarmlogError, code="SWL410"):
    """A query is refused or failed; only one read-only SELECT over the projections is allowed."""


class QueryTimeout(QueryError, code="SWL414"):
    """A query ran past its time budget and was stopped."""


class ProjectorDown(QueryError):
    """No projector answers its services, and the asker may not (or cannot) read the file."""


class BusyError(BusError, code="SWL413"):
    """A service has as much of one caller's work as it takes at once; ask again shortly."""


class ModelError(SwarmlogError, code="SWL500"):
    """A model call failed; ``retryable`` when trying again later may work (rate limits, 5xx,
    timeouts, an unreachable server)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ToolServerError(SwarmlogError, code="SWL510"):
    """An agent's MCP server did not start, went away or did not answer in time (``server``
    names it). Not a tool's own failure: that is an ``error`` outcome the model reads."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(message)
        self.server = server


class WaitTimeout(SwarmlogError, code="SWL700"):
    """A workflow or task waited for did not end in time; ``reasons`` say what holds it up, as
    the projections show it (an escalation waiting for a human, no live agent for a capability,
    no live conductor...), empty when nothing does (it is just not done yet)."""

    def __init__(
        self, message: str, *, item_id: str, status: str | None, reasons: list[str]
    ) -> None:
        super().__init__(message)
        self.item_id = item_id
        """The workflow's or task's id."""
        self.status = status
        """Its state when the time was up (``None``: the projection does not know it)."""
        self.reasons = reasons


class Stuck(WaitTimeout, code="SWL701"):
    """A workflow or task waited for cannot move by itself: something blocks it that will not
    clear on its own (an open escalation, a capability no live agent has, no live conductor, a
    killed role...), seen for a few seconds, so the wait gave up before its timeout.
    ``blocked`` holds those reasons (each says what to do); ``reasons`` all of them."""

    def __init__(
        self,
        message: str,
        *,
        item_id: str,
        status: str | None,
        reasons: list[str],
        blocked: list[str],
    ) -> None:
        super().__init__(message, item_id=item_id, status=status, reasons=reasons)
        self.blocked = blocked
        """The reasons that will not clear by themselves."""


class TaskError(SwarmlogError):
    """A handler's failure with a stable ``code``; ``retryable=False`` escalates at once.

    Raised by an agent's handler to fail the task in hand: it becomes an ``error`` event with
    this ``code`` and ``message``, retried by the agent's retry policy when ``retryable``.
    """

    code = "SWL600"
    """Replaced by each error's own code (the handler's, e.g. ``empty_input``)."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retryable: bool = True,
        dependency: str | None = None,
    ) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.dependency = dependency
        """The declared external dependency that failed, if it was one (its breaker counts it)."""

    def __str__(self) -> str:
        # The handler's own words, as before TaskError joined the tree: no "[code]" prefix.
        return str(self.args[0])
