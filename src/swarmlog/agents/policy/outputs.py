"""Checking a handler's output before it becomes a ``result`` (pure).

Output must be JSON (it goes into a signed event) and small enough for one event; when the task
declares ``expected_output_schema`` (a JSON Schema), it must conform. Anything else is garbage
output and counts as a failure of the attempt, retried like any other.
"""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlog.agents.api import TaskError
from swarmlog.schemas.codec import MAX_EVENT_BYTES

__all__ = ["check_output"]

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
