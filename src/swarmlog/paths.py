"""Where a file lives below a directory, said once: ``keys_dir = Below("data_dir", "keys")``."""

from __future__ import annotations

from pathlib import Path
from typing import overload

__all__ = ["Below"]


class Below:
    """A read-only attribute: the path ``parts`` below the directory held by the attribute
    ``base`` of the same object.

    Declaring a layout as a column of these (rather than a property per path) keeps each path
    in one line, and every path follows its base when the base is another directory.
    """

    def __init__(self, base: str, *parts: str) -> None:
        self._base = base
        self._parts = parts

    @overload
    def __get__(self, obj: None, owner: type[object]) -> Below: ...

    @overload
    def __get__(self, obj: object, owner: type[object] | None = None) -> Path: ...

    def __get__(self, obj: object | None, owner: type[object] | None = None) -> Below | Path:
        if obj is None:
            return self  # looked up on the class: the declaration itself
        base: Path = getattr(obj, self._base)
        return base.joinpath(*self._parts)
