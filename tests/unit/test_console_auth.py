"""Who may use the console (pure checks of a request's headers), and that what agents write is
shown as text, never run as markup."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from swarmlog.console.app import _templates
from swarmlog.console.auth import (
    TOKEN_FILE,
    cookie_name,
    host_allowed,
    load_token,
    request_is_same_origin,
    session_value,
    token_matches,
)


def test_the_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    token = load_token(tmp_path)
    assert len(token) >= 40
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert load_token(tmp_path) == token  # never overwritten


def test_the_cookie_holds_no_token_and_only_the_token_matches() -> None:
    assert session_value("t1") != "t1"
    assert session_value("t1") != session_value("t2")
    assert token_matches("secret", "secret")
    assert not token_matches("secret", "secreT")
    assert not token_matches("secret", None)
    assert cookie_name(8470) != cookie_name(8471)  # two consoles on one host keep apart


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8470", True),
        ("localhost:8470", True),
        ("127.0.0.1:8471", False),  # another port: not this console
        ("attacker.example:8470", False),  # a rebound DNS name
        ("", False),
        (None, False),
    ],
)
def test_only_the_consoles_own_address_is_answered(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, "127.0.0.1", 8470) is allowed


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({"origin": "http://127.0.0.1:8470"}, True),
        ({"origin": "http://evil.example"}, False),
        ({"origin": "http://127.0.0.1:8471"}, False),
        ({"origin": "null", "sec-fetch-site": "same-origin"}, True),
        ({"origin": "null", "sec-fetch-site": "cross-site"}, False),  # a sandboxed frame
        ({"origin": "null"}, False),
        ({"sec-fetch-site": "same-origin"}, True),
        ({"sec-fetch-site": "same-site"}, False),
        ({}, False),  # a browser always says one or the other: neither is refused
    ],
)
def test_a_state_change_must_come_from_the_consoles_own_page(
    headers: dict[str, str], same: bool
) -> None:
    assert request_is_same_origin(headers, "127.0.0.1:8470") is same


def test_what_an_agent_wrote_is_escaped_on_the_page() -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    request = SimpleNamespace(url=SimpleNamespace(path="/tasks/t1", query=""))
    task = SimpleNamespace(
        task_id="t1",
        status="failed",
        workflow_id=None,
        role=hostile,
        capability="c",
        attempt=1,
        priority="normal",
        error=hostile,
        input={"text": hostile},
        output=hostile,
    )
    events = [
        SimpleNamespace(
            seq=1,
            type=hostile,
            sender=hostile,
            signer="ab" * 32,
            verified=False,
            problem=hostile,
            occurred_at=1,
        )
    ]
    page = _templates.get_template("task.html").render(
        request=request,
        flash=hostile,
        task=task,
        events=events,
        turns=[("assistant", hostile, "reply")],
        calls=[],
    )
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
