"""Hypothesis profiles and schema-derived strategies for the property tests.

Profiles: ``quick`` (the default) is fast, every file runs in well under a minute; ``nightly``
runs many more examples. Pick one with ``SWARMLOG_HYPOTHESIS_PROFILE=nightly``.

``hypothesis.strategies.from_type`` alone does not know msgspec's ``Meta`` constraints (it strips
``Annotated`` metadata), so it would produce ids with dots, negative timestamps and so on. Instead
every schema struct gets a strategy derived from ``msgspec.inspect`` (patterns, lengths, bounds,
literals, unions, nested structs) and registered with ``register_type_strategy``: after that,
``st.from_type(Envelope)`` or ``st.from_type(TaskAssignment)`` yields only schema-valid values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import Envelope, SignedEvent
from swarmlog.schemas.payloads import (
    PAYLOAD_TYPES,
    ModelCallCompleted,
    ModelCallRequested,
    TokenUsage,
    ToolCallCompleted,
    ToolCallRequested,
    model_call_id,
    tool_call_id,
)

# No deadline: a test that fails for taking long is a timing test, and the suite runs four
# tests at a time on two cores (one draw of a payload of every type took 297 ms once).
settings.register_profile("quick", max_examples=60, deadline=None)
settings.register_profile(
    "nightly",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("SWARMLOG_HYPOTHESIS_PROFILE") or "quick"
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``nightly`` a property test runs for minutes: lift the per-test timeout here."""
    if PROFILE == "quick":
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(0))


# --- strategies derived from the msgspec schema ---------------------------------------------------

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1  # the MessagePack integer range
_MAX_TEXT = 40  # generated strings stay short; the limits are still respected
_MAX_ITEMS = 4

#: Text msgspec can encode (no lone surrogates).
text_chars = st.characters(exclude_categories=("Cs",))

#: Any JSON value (the ``Json`` fields): what survives both MessagePack and JSON unchanged.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(text_chars, max_size=20),
    lambda children: (
        st.lists(children, max_size=_MAX_ITEMS)
        | st.dictionaries(st.text(text_chars, max_size=10), children, max_size=_MAX_ITEMS)
    ),
    max_leaves=10,
)


def _int_strategy(t: mi.IntType) -> st.SearchStrategy[int]:
    lo = _INT_MIN if t.ge is None else t.ge
    hi = _INT_MAX if t.le is None else t.le
    if t.gt is not None:
        lo = t.gt + 1
    if t.lt is not None:
        hi = t.lt - 1
    return st.integers(min_value=lo, max_value=hi)


def _float_strategy(t: mi.FloatType) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=t.ge if t.ge is not None else t.gt,
        max_value=t.le if t.le is not None else t.lt,
        exclude_min=t.gt is not None,
        exclude_max=t.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    )


_LOWER_DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


def _token(rest: str, max_length: int) -> st.SearchStrategy[str]:
    """``^[a-z0-9][<rest>]*$`` up to ``max_length`` characters (faster than ``from_regex``)."""
    return st.builds(
        str.__add__,
        st.sampled_from(_LOWER_DIGITS),
        st.text(st.sampled_from(rest), max_size=min(max_length - 1, 20))
        | st.text(st.sampled_from(rest), min_size=max_length - 1, max_size=max_length - 1),
    )


#: Fast strategies for the patterns the schema uses; any other pattern falls back to from_regex.
_PATTERNS: dict[str, Any] = {
    r"^[a-z0-9][a-z0-9_-]*\Z": lambda hi: _token(_LOWER_DIGITS + "_-", hi),
    r"^[a-z0-9][a-z0-9_.:-]*\Z": lambda hi: _token(_LOWER_DIGITS + "_.:-", hi),
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z": lambda hi: st.builds(
        str.__add__,
        st.sampled_from(_LOWER_DIGITS + _LOWER_DIGITS.upper()),
        st.text(st.sampled_from(_LOWER_DIGITS + _LOWER_DIGITS.upper() + "_.:-"), max_size=hi - 1),
    ),
    r"^(\*|[a-z0-9][a-z0-9_-]*)\Z": lambda hi: st.just("*") | _token(_LOWER_DIGITS + "_-", hi),
    r"^[0-9A-HJKMNP-TV-Z]{26}\Z": lambda hi: st.text(
        st.sampled_from(_CROCKFORD), min_size=26, max_size=26
    ),
    r"^[0-9a-f]{64}\Z": lambda hi: _hex64,
    r"^([0-9a-f]{64})?\Z": lambda hi: st.just("") | _hex64,
}


def _str_strategy(t: mi.StrType) -> st.SearchStrategy[str]:
    lo = t.min_length or 0
    hi = t.max_length
    known = None if t.pattern is None else _PATTERNS.get(t.pattern)
    if known is not None and lo <= 1:
        strategy: st.SearchStrategy[str] = known(hi or 64)
        return strategy
    if t.pattern is not None:
        strategy = st.from_regex(t.pattern, fullmatch=True)
        return strategy.filter(lambda s: lo <= len(s) and (hi is None or len(s) <= hi))
    return st.text(text_chars, min_size=lo, max_size=min(hi or _MAX_TEXT, max(lo, _MAX_TEXT)))


def strategy_for_info(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy producing values that satisfy the msgspec type ``t``."""
    match t:
        case mi.AnyType():
            return json_values
        case mi.NoneType():
            return st.none()
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            return _int_strategy(t)
        case mi.FloatType():
            return _float_strategy(t)
        case mi.StrType():
            return _str_strategy(t)
        case mi.BytesType():
            lo = t.min_length or 0
            hi = t.max_length if t.max_length is not None else 100
            return st.binary(min_size=lo, max_size=min(hi, max(lo, 100)))
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.ListType():
            hi = _MAX_ITEMS if t.max_length is None else min(t.max_length, _MAX_ITEMS)
            return st.lists(strategy_for_info(t.item_type), min_size=t.min_length or 0, max_size=hi)
        case mi.DictType():
            hi = _MAX_ITEMS if t.max_length is None else min(t.max_length, _MAX_ITEMS)
            return st.dictionaries(
                strategy_for_info(t.key_type),
                strategy_for_info(t.value_type),
                min_size=t.min_length or 0,
                max_size=hi,
            )
        case mi.UnionType():
            return st.one_of([strategy_for_info(member) for member in t.types])
        case mi.StructType():
            return struct_strategy(t.cls)
    raise NotImplementedError(f"no strategy for {t!r}")


def _derived_call(kw: dict[str, Any], call_id: Any) -> dict[str, Any]:
    """A journal payload's fields made consistent: its call id derived from its task and index,
    its tool named after its server (``SERVER.TOOL``, or no dot for a Python tool)."""
    kw = {**kw, "call_id": call_id(kw["task_id"], kw["call_index"])}
    if "tool" in kw:
        server = kw.get("server", "")
        bare = kw["tool"].replace(".", "_")
        kw["tool"] = f"{server}.{bare}"[:192] if server else bare
    return kw


_CONSISTENT: dict[type[msgspec.Struct], Any] = {
    ModelCallRequested: lambda kw: _derived_call(kw, model_call_id),
    ModelCallCompleted: lambda kw: _derived_call(kw, model_call_id),
    ToolCallRequested: lambda kw: _derived_call(kw, tool_call_id),
    ToolCallCompleted: lambda kw: _derived_call(kw, tool_call_id),
}
"""Structs whose fields depend on each other (checked at decode): how to make drawn fields
agree."""


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of ``cls``; optional fields are sometimes left at their default."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required = {f.name: strategy_for_info(f.type) for f in info.fields if f.required}
    optional = {f.name: strategy_for_info(f.type) for f in info.fields if not f.required}
    consistent = _CONSISTENT.get(cls, lambda kw: kw)
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**consistent(kw)))


for _cls in (*PAYLOAD_TYPES.values(), TokenUsage, Credential, Envelope, SignedEvent):
    st.register_type_strategy(_cls, st.deferred(lambda c=_cls: struct_strategy(c)))
