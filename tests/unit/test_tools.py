"""Python tools (``@tool``): schemas from signatures, the model's arguments decoded or refused
with words it can act on, results as JSON; pins of tool definitions; MCP server declarations;
a toolbox of Python tools only (no MCP SDK loaded)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import jsonschema
import msgspec
import pytest

from swarmlog.agents.tools import (
    MCPServer,
    Toolbox,
    ToolPin,
    ToolSpec,
    compare_pins,
    declared_grants,
    function_tools,
    pin,
    tool,
    tool_digest,
    tool_of,
)
from swarmlog.errors import ConfigError, TaskError


class Window(msgspec.Struct):
    start: int
    end: int = 0


@dataclass
class Found:
    word: str
    at: list[int]


class Writer:
    role: ClassVar[str] = "writer"
    mcp_servers: ClassVar[tuple[MCPServer, ...]] = (
        MCPServer(name="time", command=("mcp-server-time",)),
        MCPServer(name="crm", url="http://127.0.0.1:9/mcp"),
    )

    def __init__(self, language: str = "en") -> None:
        self.language = language

    @tool
    def word_count(self, text: str, *, unique: bool = False) -> int:
        """Count the words of a text.

        Each distinct word once if ``unique``."""
        words = text.split()
        return len(set(words) if unique else words)

    @tool(name="find", description="Find a word in a text.")
    async def find_word(
        self,
        text: str,
        word: Annotated[str, msgspec.Meta(min_length=1, description="the word to find")],
        window: Window | None = None,
    ) -> Found:
        words = text.split()
        lo, hi = (window.start, window.end or len(words)) if window else (0, len(words))
        return Found(word, [i for i in range(lo, hi) if words[i] == word])

    @tool
    def language_of(self) -> str:
        """The writer's language (a method sees its agent)."""
        return self.language

    def not_a_tool(self) -> None:
        pass


@tool
def record(note: str, idempotency_key: str) -> dict[str, str]:
    """Record a note once per key."""
    return {"note": note, "key": idempotency_key}


def _tools(agent: object) -> dict[str, Any]:
    return {t.name: t for t in function_tools(agent)}


def test_a_signature_becomes_a_json_schema() -> None:
    tools = _tools(Writer())
    assert sorted(tools) == ["find", "language_of", "word_count"]
    count = tools["word_count"].spec
    assert count == ToolSpec(
        name="word_count",
        description="Count the words of a text.\n\nEach distinct word once if ``unique``.",
        parameters={
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "unique": {"type": "boolean", "default": False},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
    )
    assert tools["language_of"].spec.parameters["properties"] == {}
    find = tools["find"].spec
    assert (find.name, find.description) == ("find", "Find a word in a text.")
    assert find.parameters["properties"]["word"] == {
        "type": "string",
        "minLength": 1,
        "description": "the word to find",
    }
    # the nested Struct stays a definition the schema's own $ref resolves to
    assert set(find.parameters["$defs"]) == {"Window"}
    jsonschema.Draft202012Validator.check_schema(find.parameters)
    check = jsonschema.Draft202012Validator(find.parameters)
    assert check.is_valid({"text": "a b", "word": "b", "window": {"start": 1}})
    assert not check.is_valid({"text": "a b", "word": "b", "window": {"start": "one"}})


async def test_a_call_decodes_the_arguments_and_encodes_the_result() -> None:
    tools = _tools(Writer(language="fr"))
    ok = await tools["word_count"].invoke('{"text": "a b a", "unique": true}', "t.t1")
    assert (ok.status, ok.result) == ("ok", 2)
    found = await tools["find"].invoke(
        '{"text": "a b a b", "word": "b", "window": {"start": 2}}', "t.t2"
    )
    assert (found.status, found.result) == ("ok", {"word": "b", "at": [3]})
    assert (await tools["language_of"].invoke("", "t.t3")).result == "fr"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ('{"text": ', "the arguments of word_count are not valid JSON: "),
        ('{"text": 3}', "do not match its parameters: Expected `str`, got `int` - at `$.text`"),
        ("{}", "Object missing required field `text`"),
        ('{"text": "a", "limit": 3}', "Object contains unknown field `limit`"),
        ('["a"]', "Expected `object`, got `array`"),
    ],
)
async def test_bad_arguments_are_an_error_the_model_can_read(arguments: str, says: str) -> None:
    outcome = await _tools(Writer())["word_count"].invoke(arguments, "t.t1")
    assert outcome.status == "error"
    assert says in outcome.error
    assert outcome.result is None


async def test_an_idempotency_key_is_hidden_from_the_model_and_is_the_call_id() -> None:
    declared = tool_of(record)
    assert "idempotency_key" not in declared.spec.parameters["properties"]
    assert declared.spec.parameters["required"] == ["note"]
    outcome = await declared.invoke('{"note": "hi"}', "task-7.t3")
    assert outcome.result == {"note": "hi", "key": "task-7.t3"}
    # the model cannot choose the key: it is not a parameter it may send
    sneaky = await declared.invoke('{"note": "hi", "idempotency_key": "mine"}', "task-7.t3")
    assert sneaky.status == "error"
    assert "unknown field `idempotency_key`" in sneaky.error


async def test_a_failing_tool_is_an_error_outcome_and_a_task_error_fails_the_task() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    def broken() -> object:
        return object()

    def give_up() -> None:
        raise TaskError("no_source", "the source is gone", retryable=False)

    failed = await tool_of(divide).invoke('{"a": 1, "b": 0}', "t.t1")
    assert failed.status == "error"
    assert failed.error == "divide failed: ZeroDivisionError: division by zero"
    not_json = await tool_of(broken).invoke("{}", "t.t2")
    assert not_json.status == "error"
    assert "broken returned a value that is not JSON" in not_json.error
    with pytest.raises(TaskError, match="the source is gone"):
        await tool_of(give_up).invoke("{}", "t.t3")


async def test_a_sync_tool_runs_off_the_event_loop_and_an_async_one_on_it() -> None:
    loop_thread = threading.get_ident()

    def where_sync() -> bool:
        return threading.get_ident() == loop_thread

    async def where_async() -> bool:
        return threading.get_ident() == loop_thread

    assert (await tool_of(where_sync).invoke("{}", "t.t1")).result is False
    assert (await tool_of(where_async).invoke("{}", "t.t2")).result is True


def test_declarations_that_cannot_be_tools_fail_at_once() -> None:
    with pytest.raises(TypeError, match="parameter text has no type annotation"):

        @tool
        def untyped(text) -> None:  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(TypeError, match="parameter words must be a named parameter"):

        @tool
        def spread(*words: str) -> None:
            pass

    with pytest.raises(TypeError, match=r"tool name 'time\.now' is not usable"):
        tool(name="time.now")(lambda: None)
    with pytest.raises(TypeError, match="has no JSON Schema"):

        @tool
        def opaque(lock: threading.Lock) -> None:  # type: ignore[valid-type]
            pass


def test_declared_grants_name_the_tools_and_servers_of_the_class() -> None:
    assert declared_grants(Writer) == (["find", "language_of", "word_count"], ["crm", "time"])
    assert declared_grants(object) == ([], [])


def test_a_digest_is_of_the_canonical_definition() -> None:
    spec = ToolSpec(
        name="a",
        description="d",
        parameters={"type": "object", "properties": {"x": {"type": "integer", "minimum": 0}}},
    )
    reordered = ToolSpec(
        name="a",
        description="d",
        parameters={"properties": {"x": {"minimum": 0, "type": "integer"}}, "type": "object"},
    )
    assert tool_digest(spec) == tool_digest(reordered)
    assert len(tool_digest(spec)) == 64
    worded = msgspec.structs.replace(spec, description="d.")
    retyped = msgspec.structs.replace(
        spec, parameters={"type": "object", "properties": {"x": {"type": "number"}}}
    )
    renamed = msgspec.structs.replace(spec, name="b")
    digests = {tool_digest(s) for s in (spec, worded, retyped, renamed)}
    assert len(digests) == 4


def test_comparing_pins_says_what_changed_appeared_and_vanished() -> None:
    before = [ToolPin(name="a", digest="1"), ToolPin(name="b", digest="2")]
    after = [ToolPin(name="a", digest="9"), ToolPin(name="c", digest="3")]
    diff = compare_pins(before, after)
    assert (diff.changed, diff.appeared, diff.vanished) == (("a",), ("c",), ("b",))
    assert not diff.clean
    assert diff.describe() == "changed: a; appeared: c; vanished: b"
    assert compare_pins(before, list(reversed(before))).clean
    assert pin(ToolSpec(name="a")).digest == tool_digest(ToolSpec(name="a"))


@pytest.mark.parametrize(
    ("declaration", "says"),
    [
        ({"name": "Time", "command": ("x",)}, "lower-case identifier"),
        ({"name": "time"}, "either command"),
        ({"name": "time", "command": ("x",), "url": "http://h/mcp"}, "either command"),
        ({"name": "time", "command": "mcp-server-time"}, "sequence of words"),
        ({"name": "time", "url": "ftp://h"}, "http:// or https://"),
        ({"name": "time", "url": "http://h/mcp", "env": {"A": "1"}}, "for stdio servers"),
        ({"name": "time", "command": ("x",), "headers": {"A": "1"}}, "for HTTP servers"),
        ({"name": "time", "command": ("x",), "timeout": 0}, "timeout must be positive"),
    ],
)
def test_a_bad_server_declaration_says_what_to_fix(declaration: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        MCPServer(**declaration)


def test_a_server_declaration_keeps_its_secrets_out_of_its_repr() -> None:
    server = MCPServer(name="crm", url="http://h/mcp?k=1", headers={"Authorization": "Bearer s3"})
    assert "s3" not in repr(server)
    assert server.describe() == "url http://h/mcp"
    listed = MCPServer(name="git", command=["mcp-server-git", "--repository", "."])  # type: ignore[arg-type]
    assert listed.command == ("mcp-server-git", "--repository", ".")
    assert listed.transport == "stdio"
    assert hash(listed) == hash(MCPServer(name="git", command=listed.command))


async def test_a_toolbox_of_python_tools_offers_pins_and_calls_them() -> None:
    def shout(text: str) -> str:
        """Say it louder."""
        return text.upper()

    agent = Writer()
    async with Toolbox.open(agent, functions=[shout, record], servers=()) as box:
        names = [s.name for s in box.specs()]
        assert names == ["find", "language_of", "record", "shout", "word_count"]
        assert [p.name for p in box.pins()] == names
        assert {p.digest for p in box.pins()} == {tool_digest(s) for s in box.specs()}
        ok = await box.call("shout", '{"text": "hi"}', "t.t1")
        assert (ok.status, ok.result, ok.server) == ("ok", "HI", "")
        assert ok.definition == tool_digest(tool_of(shout).spec)
        keyed = await box.call("record", '{"note": "n"}', "t.t2")
        assert keyed.result == {"note": "n", "key": "t.t2"}
        unknown = await box.call("delete_everything", "{}", "t.t3")
        assert unknown.status == "refused"
        assert unknown.error.startswith("unknown tool 'delete_everything': the tools of this")
        assert (await box.drift()).clean


async def test_two_tools_of_one_name_are_refused() -> None:
    def word_count(text: str) -> int:
        return 0

    with pytest.raises(ConfigError, match="two tools are named 'word_count'"):
        async with Toolbox.open(Writer(), functions=[word_count], servers=()):
            pass


def test_an_agent_without_mcp_servers_never_imports_the_sdk() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from swarmlog.agents.api import Agent
        from swarmlog.agents.tools import Toolbox, tool

        class Plain(Agent):
            role = "plain"

            @tool
            def echo(self, text: str) -> str:
                return text

        async def main():
            async with Toolbox.open(Plain()) as box:
                assert (await box.call("echo", '{"text": "x"}', "t.t1")).result == "x"

        asyncio.run(main())
        print(sorted(m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "httpx2"))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_literal_and_optional_parameters() -> None:
    def pick(colour: Literal["red", "blue"], shade: int | None = None) -> str:
        return colour

    parameters = tool_of(pick).spec.parameters
    assert parameters["properties"] == {
        "colour": {"enum": ["blue", "red"]},
        "shade": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
    }
    assert parameters["required"] == ["colour"]
