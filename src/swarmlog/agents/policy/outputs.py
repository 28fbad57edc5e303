"""Checking a handler's output before it becomes a ``result`` (pure).

Output must be JSON (it goes into a signed event) and small enough for one event; when the task
declares ``expected_output_schema`` (a JSON Schema), it must conform. Anything else is garbage
output and counts as a failure of the attempt, retried like any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from swarmlog.agents.api import TaskError
from swarmlog.schemas.codec import MAX_EVENT_BYTES

__all__ = ["OutputRejected", "check_output", "decode_output", "output_schema"]

_MAX_OUTPUT_BYTES = MAX_EVENT_BYTES // 2  # room for the envelope, usage and signature


def check_output(output: Any, schema: Any) -> None:
    """Raise :class:`TaskError` when ``output`` is not JSON, too big, or breaks ``schema``."""
    try:
        encoded = msgspec.json.encode(output)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TaskError("invalid_output", f"the output is not JSON: {exc}") from None
    if len(encoded) > _MAX_OUTPUT_BYTES:
        raise TaskError(
            "invalid_output",
            f"the output is {len(encoded)} bytes; at most {_MAX_OUTPUT_BYTES} fit in a result",
            retryable=False,
        )
    if schema is None:
        return
    import jsonschema  # here: most tasks carry no schema, and every agent process imports this

    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise TaskError(
            "bad_output_schema",
            f"the task's output schema is invalid: {exc.message}",
            retryable=False,
        ) from None
    error = jsonschema.exceptions.best_match(validator_class(schema).iter_errors(output))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise TaskError(
            "invalid_output", f"the output does not match its schema at {where}: {error.message}"
        )


class OutputRejected(ValueError):
    """A model's answer is not the structured output asked for; the message says why, in
    words meant to be shown back to the model."""


def output_schema(output: type[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema a model is asked to answer in: ``output`` itself when it is a schema,
    else the one msgspec derives from the type (a ``Struct``, a dataclass, ``list[int]`` ...)."""
    if isinstance(output, Mapping):
        return dict(output)
    schema = msgspec.json.schema(output)
    ref = schema.get("$ref", "")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        # A schema whose root is a reference: endpoints want an object at the top, so the root
        # type is lifted there (its definitions stay for the references inside it).
        defs = schema["$defs"]
        return {**defs[ref.removeprefix("#/$defs/")], "$defs": defs}
    return schema


_FENCE = re.compile(r"^```[a-zA-Z]*\n(.*)\n```$", re.S)


def decode_output(text: str, output: type[Any] | Mapping[str, Any]) -> Any:
    """The answer ``text`` decoded into ``output`` (an instance of the type, or JSON that
    conforms to the schema); :class:`OutputRejected` when it is not."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)  # models like to wrap JSON in a Markdown code block
    body = fenced.group(1) if fenced else stripped
    if not isinstance(output, Mapping):
        try:
            return msgspec.json.decode(body, type=output)
        except msgspec.ValidationError as exc:
            raise OutputRejected(f"the answer does not match the output type: {exc}") from None
        except msgspec.DecodeError as exc:
            raise OutputRejected(f"the answer is not JSON: {exc}") from None
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise OutputRejected(f"the answer is not JSON: {exc}") from None
    try:
        check_output(value, dict(output))
    except TaskError as exc:
        if exc.code == "bad_output_schema":
            raise
        raise OutputRejected(exc.message) from None
    return value
