"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes import RUNNING


@pytest.fixture
async def close_runtimes() -> AsyncIterator[None]:
    """Close every runtime a test started (listed in :data:`fakes.RUNNING`), pass or fail."""
    yield
    while RUNNING:
        await RUNNING.pop().close()
