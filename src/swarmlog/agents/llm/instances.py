"""A minimal valid instance of a JSON Schema (pure), for the offline model's structured output.

Deterministic and small: an object gets its required properties only, an array its
``minItems`` items, a string its ``minLength`` in ``x`` (or a sample of its ``format``), a number
its lower bound or zero; ``const`` and ``enum`` (the first value) win over the type; ``anyOf`` and
``oneOf`` take their first branch that is not ``null``, ``allOf`` merges its branches; ``$ref``
follows local references (``#/$defs/...``, as msgspec writes them). Patterns, ``multipleOf`` and
``not`` are not honoured: a schema that needs them gets an instance that may not conform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaInstanceError", "instance_of"]

_DEPTH = 32
"""Deeper than this is a schema that requires itself (no finite instance) or a mistake."""

_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "x@example.com",
    "uri": "urn:x",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
}

_NO_TYPE: dict[str, str] = {"properties": "object", "required": "object", "items": "array"}


class SchemaInstanceError(ValueError):
    """The schema has no instance this module can build (a cycle of required references, a
    reference it cannot follow)."""


def instance_of(schema: Mapping[str, Any]) -> Any:
    """A minimal instance of ``schema`` (a JSON Schema, references resolved against itself)."""
    return _instance(schema, schema, 0)


def _instance(schema: Mapping[str, Any] | bool, root: Mapping[str, Any], depth: int) -> Any:
    if depth > _DEPTH:
        raise SchemaInstanceError("the schema nests too deep (does a type require itself?)")
    if isinstance(schema, bool):  # true: anything; false: nothing, but null is as good a guess
        return None
    if "$ref" in schema:
        return _instance(_resolve(str(schema["$ref"]), root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        if schema.get(union):
            branches = schema[union]
            chosen = next((b for b in branches if not _is_null(b)), branches[0])
            return _instance(chosen, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            branch = _resolve(branch["$ref"], root) if "$ref" in branch else branch
            for key, value in branch.items():
                if key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                elif key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                else:
                    merged.setdefault(key, value)
        return _instance(merged, root, depth + 1)
    return _typed(schema, _type(schema), root, depth)


def _type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    return next((t for key, t in _NO_TYPE.items() if key in schema), "null")


def _typed(schema: Mapping[str, Any], kind: str, root: Mapping[str, Any], depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: _instance(properties.get(name, True), root, depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", True)
        return [
            _instance(prefix[i] if i < len(prefix) else items, root, depth + 1)
            for i in range(count)
        ]
    if kind == "string":
        sample = _FORMATS.get(str(schema.get("format", "")), "")
        least = int(schema.get("minLength", 0))
        return sample if len(sample) >= least else sample + "x" * (least - len(sample))
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    return None


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    # zero, moved into the bounds (lower first: the bounds of a sound schema do not cross)
    step = 1 if integer else 0.5
    value: float = 0
    if "minimum" in schema and value < schema["minimum"]:
        value = schema["minimum"]
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + step
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - step
    if integer:
        return math.ceil(value)
    return float(value)


def _is_null(schema: Mapping[str, Any] | bool) -> bool:
    if isinstance(schema, bool):
        return False
    if "$ref" in schema:
        return False
    return schema.get("type") == "null" or schema.get("const", 0) is None


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        raise SchemaInstanceError(f"cannot follow the reference {ref!r}: only local ones (#/...)")
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise SchemaInstanceError(f"the reference {ref!r} points nowhere in the schema")
        node = node[part]
    if not isinstance(node, Mapping):
        raise SchemaInstanceError(f"the reference {ref!r} is not a schema")
    return node
