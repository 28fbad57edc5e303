"""The public API is pinned, and the pure core never imports I/O libraries."""

from __future__ import annotations

import re

import swarmlog

EXPECTED = {
    # What an agent author imports: the agent API and the payloads its handlers take or emit.
    "Agent",
    # AI work: the ready LLM agent and planner, tools, MCP servers, conversations
    "Answer",
    "LLMAgent",
    "LLMPlanner",
    "MCPServer",
    "Message",
    "ToolCall",
    "ToolOutcome",
    "tool",
    "ClarificationRequest",
    "Context",
    "Json",
    "Payload",
    "PERMANENT_ERRORS",
    "RetryPolicy",
    "TaskAssignment",
    "TaskError",
    "TaskOffered",
    "TokenUsage",
    "on",
    # What an operator embedding swarmlog needs: settings, bring-up, driving the system from
    # code (the client: submit, wait, events, views), reading the projections.
    "Client",
    "ProjectionClient",
    "Settings",
    "SystemUp",
    "bring_up",
    "open_projections",
    # The error tree, whole.
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
    "ToolServerError",
    "VerificationError",
    "WaitTimeout",
}
INTERNALS = {"EmbeddedServer", "ChainHead", "seal", "JetStreamLog", "MemoryLog", "Projector"}


def test_all_matches_the_pinned_api() -> None:
    assert set(swarmlog.__all__) == EXPECTED
    for name in swarmlog.__all__:
        assert hasattr(swarmlog, name), name
    assert not INTERNALS & set(dir(swarmlog)), "internals are imported from their packages"


def test_every_error_is_in_the_tree_and_exported() -> None:
    import swarmlog.errors as errors

    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, errors.SwarmlogError), name
        assert name in swarmlog.__all__, name
        drawn = re.search(rf"(── |^    ){name}\b", errors.__doc__ or "", re.MULTILINE)
        assert drawn, f"{name} is not drawn in the error tree"


def test_a_task_error_keeps_its_own_code_and_words() -> None:
    error = swarmlog.TaskError("empty_input", "nothing to summarise", retryable=False)
    assert isinstance(error, swarmlog.SwarmlogError)
    assert (error.code, error.message, error.retryable) == (
        "empty_input",
        "nothing to summarise",
        False,
    )
    assert str(error) == "nothing to summarise"
    assert str(swarmlog.TaskError("timeout")) == "timeout"
