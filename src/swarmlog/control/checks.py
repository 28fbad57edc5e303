"""Arguments checked against the event schema's string types before they are used (in SQL, on
the log, in a key's name): one that does not conform is a :class:`~swarmlog.errors.ConfigError`
naming the argument, said in the caller's words."""

from __future__ import annotations

import msgspec

from swarmlog.errors import ConfigError
from swarmlog.schemas.types import Name

__all__ = ["check_name", "conform"]


def conform(value: str, kind: object, message: str, parameter: str | None = None) -> str:
    """``value`` when it is a ``kind`` (a constrained string type of
    :mod:`swarmlog.schemas.types`), else :class:`ConfigError` with ``message`` and
    ``parameter``."""
    try:
        checked: str = msgspec.convert(value, kind)
    except msgspec.ValidationError:
        raise ConfigError(message, parameter=parameter) from None
    return checked


def check_name(value: str, what: str, parameter: str | None = None, kind: object = Name) -> str:
    """``value`` checked as an id (so it can go into SQL as a literal); ``what`` names it in the
    error (``"workflow id"``), ``kind`` is its type when it is not a plain
    :data:`~swarmlog.schemas.types.Name`."""
    reason = f"{value!r} is not a valid {what} (lowercase letters, digits, - and _)"
    return conform(value, kind, reason, parameter)
