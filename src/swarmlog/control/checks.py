"""What the operator's shell checks of its input before it publishes or queries: a value of a
schema type, or a :class:`~swarmlog.errors.ConfigError` that says what a valid one is."""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlog.errors import ConfigError
from swarmlog.schemas.types import Name

__all__ = ["check_name", "checked"]


def checked(value: Any, kind: Any, message: str, parameter: str | None = None) -> Any:
    """``value`` converted to ``kind`` (a schema type, constraints included), or a
    :class:`ConfigError` with ``message``, naming ``parameter``."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError:
        raise ConfigError(message, parameter=parameter) from None


def check_name(value: str, what: str, parameter: str | None = None) -> str:
    """``value`` checked as an id (so it can go into SQL as a literal)."""
    message = f"{value!r} is not a valid {what} (lowercase letters, digits, - and _)"
    return str(checked(value, Name, message, parameter))
