"""Python functions as tools: ``@tool`` turns a typed signature into a JSON Schema (through
msgspec) and a call's JSON arguments back into typed values.

::

    class Writer(Agent):
        role = "writer"

        @tool
        def word_count(self, text: str, *, unique: bool = False) -> int:
            \"\"\"Count the words of a text (each distinct word once if ``unique``).\"\"\"
            words = text.split()
            return len(set(words) if unique else words)

    @tool(name="lookup", description="Find a customer by id.")
    async def find_customer(customer_id: int, idempotency_key: str) -> dict[str, str]: ...

Parameters may be anything msgspec decodes (builtins, ``Literal``, ``Annotated[int,
Meta(ge=0, description=...)]``, Structs, dataclasses, ``X | None``); the docstring is the tool's
description. A parameter named ``idempotency_key`` is not shown to the model: it receives the
tool call's id, the same on every attempt of the task, so a tool with side effects can make a
repeated call harmless. A model's malformed or non-conforming arguments never reach the function:
the call's outcome is an error whose text says what to fix, meant for the model to read.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import msgspec

from swarmlog.agents.tools.specs import PYTHON_TOOL_NAME, Invocation, ToolSpec
from swarmlog.errors import TaskError

__all__ = ["FunctionTool", "class_tools", "function_tools", "tool", "tool_of"]

F = TypeVar("F", bound=Callable[..., Any])

IDEMPOTENCY_KEY = "idempotency_key"
_MARK = "__swarmlog_tool__"


@dataclass(frozen=True)
class FunctionTool:
    """A Python function declared as a tool: its spec and how to call it with JSON arguments."""

    spec: ToolSpec
    function: Callable[..., Any]
    arguments: type[msgspec.Struct]
    """The Struct the model's JSON arguments decode into (one field per shown parameter)."""
    takes_idempotency_key: bool
    method: bool
    """Declared in a class (first parameter ``self``): bind it to an instance before calling."""

    @property
    def name(self) -> str:
        return self.spec.name

    def bind(self, instance: object) -> FunctionTool:
        """This method's tool on ``instance``."""
        if not self.method:
            return self
        bound = self.function.__get__(instance, type(instance))
        return FunctionTool(self.spec, bound, self.arguments, self.takes_idempotency_key, False)

    def decode(self, arguments_json: str) -> msgspec.Struct:
        """The model's argument text as typed values; :class:`ValueError` with a message for
        the model when it is not JSON or does not conform."""
        text = arguments_json.strip() or "{}"  # a model calling a tool without parameters
        try:
            return msgspec.json.decode(text, type=self.arguments)
        except msgspec.ValidationError as e:
            raise ValueError(
                f"the arguments of {self.name} do not match its parameters: {e}"
            ) from None
        except msgspec.DecodeError as e:
            raise ValueError(f"the arguments of {self.name} are not valid JSON: {e}") from None

    async def invoke(self, arguments_json: str, call_id: str) -> Invocation:
        """Decode the arguments, call the function and encode what it returns.

        A sync function runs in a worker thread, so a slow one does not stall the agent's event
        loop (its heartbeats). A :class:`TaskError` raised by the function propagates: the tool
        fails the task. Any other exception is an ``error`` outcome the model can read.
        """
        if self.method:
            raise TypeError(f"tool {self.name} is a method: bind it to an agent first")
        try:
            decoded = self.decode(arguments_json)
        except ValueError as e:
            return Invocation("error", error=str(e))
        kwargs = {f: getattr(decoded, f) for f in decoded.__struct_fields__}
        if self.takes_idempotency_key:
            kwargs[IDEMPOTENCY_KEY] = call_id
        try:
            if inspect.iscoroutinefunction(self.function):
                value = await self.function(**kwargs)
            else:
                value = await asyncio.to_thread(self.function, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
        except TaskError:
            raise
        except Exception as e:
            return Invocation("error", error=f"{self.name} failed: {type(e).__name__}: {e}")
        try:
            # through the JSON encoder and back: exactly what the journal can hold
            return Invocation("ok", result=msgspec.json.decode(msgspec.json.encode(value)))
        except (TypeError, msgspec.EncodeError) as e:
            return Invocation("error", error=f"{self.name} returned a value that is not JSON: {e}")


@overload
def tool(function: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    function: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Mark a function or an agent method as a tool (``@tool`` or ``@tool(name=...,
    description=...)``); the function itself is returned unchanged.

    The name defaults to the function's, the description to its docstring. The schema is built
    at once, so a parameter msgspec cannot describe fails at import time, not at the first call.
    """

    def mark(fn: F) -> F:
        setattr(fn, _MARK, _declare(fn, name, description))
        return fn

    return mark(function) if function is not None else mark


def tool_of(function: Callable[..., Any]) -> FunctionTool:
    """The tool a ``@tool`` function declares (a plain function not marked: declared now)."""
    found = getattr(function, _MARK, None)
    if isinstance(found, FunctionTool):
        return found
    return _declare(function, None, None)


def class_tools(cls: type) -> list[FunctionTool]:
    """The tools a class declares with ``@tool`` (its own and its bases'), unbound."""
    found = []
    for attr in sorted(dir(cls)):
        declared = getattr(getattr(cls, attr, None), _MARK, None)
        if isinstance(declared, FunctionTool):
            found.append(declared)
    return found


def function_tools(agent: object) -> list[FunctionTool]:
    """The ``@tool`` methods of an agent, bound to it."""
    return [t.bind(agent) for t in class_tools(type(agent))]


def _declare(fn: Callable[..., Any], name: str | None, description: str | None) -> FunctionTool:
    tool_name = name or str(getattr(fn, "__name__", ""))
    if not PYTHON_TOOL_NAME.match(tool_name):
        raise TypeError(
            f"tool name {tool_name!r} is not usable: use letters, digits, _ and - (at most 64,"
            " no dots)"
        )
    where = f"tool {tool_name}"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # a name the annotations use is not importable where fn is defined
        raise TypeError(f"{where}: cannot resolve its type annotations ({e})") from None
    parameters = list(inspect.signature(fn).parameters.values())
    method = bool(parameters) and parameters[0].name in {"self", "cls"}
    if method:
        parameters = parameters[1:]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    takes_key = False
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise TypeError(f"{where}: parameter {p.name} must be a named parameter")
        if p.name == IDEMPOTENCY_KEY:
            takes_key = True
            continue
        if p.name not in hints:
            raise TypeError(f"{where}: parameter {p.name} has no type annotation")
        if p.default is p.empty:
            fields.append((p.name, hints[p.name]))
        else:
            fields.append((p.name, hints[p.name], p.default))
    arguments = msgspec.defstruct(
        f"{tool_name}_arguments", fields, kw_only=True, forbid_unknown_fields=True
    )
    try:
        schema = _inline(msgspec.json.schema(arguments), f"{tool_name}_arguments")
    except TypeError as e:
        raise TypeError(f"{where}: a parameter's type has no JSON Schema ({e})") from None
    text = description if description is not None else inspect.getdoc(fn) or ""
    spec = ToolSpec(name=tool_name, description=text, parameters=schema)
    return FunctionTool(spec, fn, arguments, takes_key, method)


def _inline(schema: dict[str, Any], top: str) -> dict[str, Any]:
    """msgspec's ``{"$ref": ..., "$defs": {...}}`` as the arguments object itself, the other
    definitions kept under its ``$defs`` (the ``#/$defs/...`` references resolve at the root)."""
    defs = dict(schema.get("$defs", {}))
    root = dict(defs.pop(top))
    root.pop("title", None)
    root.setdefault("properties", {})
    if defs:
        root["$defs"] = defs
    return root
