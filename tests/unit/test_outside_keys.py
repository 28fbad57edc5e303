"""Keys made outside the operator's data dir (an auditor's): the operator keeps the credential
and the login's public nkey, never a secret; bad keys are refused with one line that says what
to give, and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmlog.bus.jetstream.reader import timestamp_ns
from swarmlog.bus.permissions import login_for
from swarmlog.control.keystore import KeyStore
from swarmlog.errors import KeyStoreError
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.signing import Identity, issue_credential


def test_a_direct_get_time_stamp_is_read_to_the_nanosecond() -> None:
    assert timestamp_ns("1970-01-01T00:00:01Z") == 1_000_000_000
    assert timestamp_ns("2026-12-03T17:25:43.795985708Z") == 1_796_318_743_795_985_708
    assert timestamp_ns("2026-12-03T17:25:43.7959Z") == 1_796_318_743_795_900_000


def test_the_key_store_keeps_a_credential_and_login_key_without_a_secret(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    operator = store.init_operator(bytes(32))
    outside = Identity.from_seed("auditor-1", b"\x07" * 32)
    login = login_for("auditor-1", b"\x07" * 32)
    credential = Credential(
        agent_id="auditor-1",
        role="auditor",
        public_key=outside.public_key,
        issuer=operator.public_key,
        issued_at=1,
    )
    store.save_public_agent("auditor-1", issue_credential(operator, credential), login.public_key)
    assert store.login_key("auditor-1") == login.public_key
    assert [c.agent_id for c in store.agents()] == ["auditor-1"]
    assert not store.agent_paths("auditor-1")[0].exists()
    with pytest.raises(KeyStoreError, match="made elsewhere"):
        store.agent("auditor-1")
    with pytest.raises(KeyStoreError, match="already has a key"):
        store.save_public_agent("auditor-1", issue_credential(operator, credential), "U")


def _swarmlog(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
    env["SWARMLOG_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "swarmlog", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_outside_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _swarmlog(data, "keys", "init").returncode == 0
    made = _swarmlog(tmp_path / "auditor", "keys", "generate", "--agent-id", "auditor-1")
    public = made.stdout.splitlines()[1].split()[-1]
    login = made.stdout.splitlines()[2].split()[-1]
    issue = ["keys", "issue", "--role", "auditor", "--agent-id", "auditor-1"]
    other_last = "B" if login.endswith("A") else "A"  # a changed checksum, whatever the key
    cases = [
        (["--public-key", public.upper(), "--login-key", login], "--public-key"),
        (["--public-key", public[:-2], "--login-key", login], "--public-key"),
        (["--public-key", public], "--login-key"),
        (["--public-key", public, "--login-key", login[:-1] + other_last], "--login-key"),
        (["--public-key", public, "--login-key", "S" + login[1:]], "--login-key"),
        (["--login-key", login], "--login-key"),
        (["--public-key", public, "--login-key", login, "-c", "text"], "--capability"),
    ]
    for extra, option in cases:
        out = _swarmlog(data, *issue, *extra)
        assert out.returncode != 0, extra
        assert out.stderr.startswith("error: "), out.stderr
        assert out.stderr.count("\n") == 1, out.stderr
        assert f"(see {option})" in out.stderr, out.stderr
    assert not (data / "keys" / "agents").exists() or not any((data / "keys" / "agents").iterdir())
    # The auditor's own secret stays where it was made, 0600.
    seed = tmp_path / "auditor" / "keys" / "agents" / "auditor-1.seed"
    assert seed.stat().st_mode & 0o777 == 0o600
    again = _swarmlog(tmp_path / "auditor", "keys", "generate", "--agent-id", "auditor-1")
    assert again.returncode != 0
    assert "never overwritten" in again.stderr
