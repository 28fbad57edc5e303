"""The projector client: a service's error reply comes back as the error it names, an agent's
query turns it into what a task can act on, and with no projector the operator reads the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from swarmlog.agents.host.session import agent_query
from swarmlog.errors import (
    BusError,
    BusyError,
    ProjectorDown,
    QueryError,
    QueryTimeout,
    TaskError,
)
from swarmlog.projections.client import ProjectionClient, remote_error
from swarmlog.projections.query import QueryResult
from swarmlog.projections.store import ProjectionStore


def reply(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"[{code}] {message}"}}


@pytest.mark.parametrize(
    ("code", "kind"),
    [("SWL413", BusyError), ("SWL414", QueryTimeout), ("SWL300", BusError), ("SWL410", QueryError)],
)
def test_an_error_reply_is_raised_as_the_error_it_names(code: str, kind: type[Exception]) -> None:
    error = remote_error(reply(code, "said once"))
    assert type(error) is kind
    assert str(error) == f"[{code}] said once"


def test_an_unknown_refusal_keeps_the_services_code() -> None:
    error = remote_error(reply("SWL411", "reply too large; add a LIMIT"))
    assert isinstance(error, QueryError)
    assert str(error) == "[SWL411] reply too large; add a LIMIT"
    assert remote_error({"columns": [], "rows": []}) is None


class Answers:
    """A stand-in for the client: answers every query with ``outcome``."""

    def __init__(self, outcome: QueryResult | Exception) -> None:
        self.outcome = outcome

    async def rows(self, sql: str, *, timeout: float) -> QueryResult:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def ask(outcome: QueryResult | Exception) -> list[dict[str, Any]]:
    return await agent_query(cast(ProjectionClient, Answers(outcome)), "SELECT 1")


async def test_an_agent_gets_whole_answers_as_rows_by_column() -> None:
    assert await ask(QueryResult(["a", "b"], [[1, 2], [3, 4]])) == [
        {"a": 1, "b": 2},
        {"a": 3, "b": 4},
    ]
    with pytest.raises(QueryError, match="more than 1 rows"):
        await ask(QueryResult(["a"], [[1]], truncated=True))


async def test_an_agent_is_told_to_ask_again_or_that_its_query_is_bad() -> None:
    for transient in (BusyError("busy"), QueryTimeout("slow"), BusError("no reply")):
        with pytest.raises(BusyError):
            await ask(transient)
    with pytest.raises(ProjectorDown):
        await ask(ProjectorDown("no projector answers queries"))
    with pytest.raises(TaskError) as refused:
        await ask(QueryError("only SELECT"))
    assert (refused.value.code, refused.value.retryable) == ("bad_query", False)


async def test_with_no_projector_the_operator_reads_the_file_and_an_agent_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "default.duckdb"
    ProjectionStore(path).close()
    operator = ProjectionClient(None, "default", fallback=path)
    assert await operator.query("SELECT 7 AS x") == [{"x": 7}]
    assert (await operator.state()).position == 0
    assert await operator.position() is None
    assert await operator.wait(5) is None
    with pytest.raises(ProjectorDown, match="no projector answers queries"):
        await ProjectionClient(None, "default").rows("SELECT 1")
