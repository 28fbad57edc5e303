"""swarmlog: multi-agent systems on a signed, append-only NATS JetStream log, projected into DuckDB.

The public API, pinned by ``tests/unit/test_public_api.py``. An agent author needs only this::

    from swarmlog import Agent, Context, RetryPolicy, TaskAssignment, TaskError, on

An operator embedding swarmlog brings a system up, drives it and reads its projections::

    from swarmlog import Client, Settings, bring_up, open_projections

(:class:`Client` submits workflows and tasks, waits for them, streams their events and reads the
views, with the CLI's contract: see ``docs/client.md``)

and every error swarmlog raises on purpose is here, under :class:`SwarmlogError`. Everything
else (the bus adapters, the projector, signing) is imported from its own package, e.g.
``swarmlog.bus.memory.MemoryLog``: those are internals, free to change.
"""

import importlib
from typing import TYPE_CHECKING, Any

from swarmlog.config import Settings
from swarmlog.errors import (
    BusError,
    BusyError,
    ConcurrencyConflict,
    ConfigError,
    KeyStoreError,
    ModelError,
    PlanError,
    ProjectorDown,
    QueryError,
    QueryTimeout,
    RowExists,
    SchemaError,
    ServerError,
    StoreBusy,
    StoreError,
    Stuck,
    SwarmlogError,
    TaskError,
    ToolServerError,
    VerificationError,
    WaitTimeout,
)
from swarmlog.schemas.payloads import (
    ClarificationRequest,
    Payload,
    TaskAssignment,
    TaskOffered,
    TokenUsage,
)
from swarmlog.schemas.types import Json

if TYPE_CHECKING:
    from swarmlog.agents.api import Agent, Context, on
    from swarmlog.agents.host.bringup import SystemUp, bring_up
    from swarmlog.agents.llm.messages import Answer, Message, ToolCall
    from swarmlog.agents.llmagent import LLMAgent
    from swarmlog.agents.planner import LLMPlanner
    from swarmlog.agents.policy.retry import PERMANENT_ERRORS, RetryPolicy
    from swarmlog.agents.tools import MCPServer, ToolOutcome, tool
    from swarmlog.control.client import Client
    from swarmlog.control.system import open_projections
    from swarmlog.projections.client import ProjectionClient

# The agent API and the operator's names are imported on first use. The operator's bring the
# whole shell (server, projector, DuckDB, the built-in roles), which an agent process must not pay
# for; the agent API brings the runtime and the bus client (about 0.15 s of CPU), which every CLI
# call would otherwise pay before it starts, since `swarmlog.cli` is in this package. The errors,
# settings and payloads are cheap and stay eager.
_LAZY_NAMES = {
    "Agent": "swarmlog.agents.api",
    "Context": "swarmlog.agents.api",
    "on": "swarmlog.agents.api",
    "Answer": "swarmlog.agents.llm.messages",
    "Message": "swarmlog.agents.llm.messages",
    "ToolCall": "swarmlog.agents.llm.messages",
    "LLMAgent": "swarmlog.agents.llmagent",
    "LLMPlanner": "swarmlog.agents.planner",
    "PERMANENT_ERRORS": "swarmlog.agents.policy.retry",
    "RetryPolicy": "swarmlog.agents.policy.retry",
    "MCPServer": "swarmlog.agents.tools",
    "ToolOutcome": "swarmlog.agents.tools",
    "tool": "swarmlog.agents.tools",
    "SystemUp": "swarmlog.agents.host.bringup",
    "bring_up": "swarmlog.agents.host.bringup",
    "Client": "swarmlog.control.client",
    "open_projections": "swarmlog.control.system",
    "ProjectionClient": "swarmlog.projections.client",
}

__all__ = [
    "PERMANENT_ERRORS",
    "Agent",
    "Answer",
    "BusError",
    "BusyError",
    "ClarificationRequest",
    "Client",
    "ConcurrencyConflict",
    "ConfigError",
    "Context",
    "Json",
    "KeyStoreError",
    "LLMAgent",
    "LLMPlanner",
    "MCPServer",
    "Message",
    "ModelError",
    "Payload",
    "PlanError",
    "ProjectionClient",
    "ProjectorDown",
    "QueryError",
    "QueryTimeout",
    "RetryPolicy",
    "RowExists",
    "SchemaError",
    "ServerError",
    "Settings",
    "StoreBusy",
    "StoreError",
    "Stuck",
    "SwarmlogError",
    "SystemUp",
    "TaskAssignment",
    "TaskError",
    "TaskOffered",
    "TokenUsage",
    "ToolCall",
    "ToolOutcome",
    "ToolServerError",
    "VerificationError",
    "WaitTimeout",
    "bring_up",
    "on",
    "open_projections",
    "tool",
]


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'swarmlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
