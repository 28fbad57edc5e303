"""Detached daemons with pidfiles and log files under the data dir.

``<data dir>/run/<name>.json`` records ``{"pid", "argv", "started_at", "keep", "restarts"}``
(mode 0600); ``<data dir>/logs/<name>.log`` is the daemon's output. A pidfile whose process is
gone, or is not a swarmlog process any more (pid reuse), is stale and removed, unless the daemon
is ``keep``: then the keeper (:mod:`swarmlog.control.keeper`) starts it again. Stopping a daemon
removes its pidfile before it signals the process, so what was stopped on purpose stays stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from swarmlog.bus.osprocesses import (
    pid_alive,
    spawn_detached,
    terminate,
    wait_pid_gone,
)
from swarmlog.errors import ServerError
from swarmlog.files import write_private_json

__all__ = [
    "DaemonInfo",
    "daemon_alive",
    "daemon_names",
    "daemons_down",
    "find_daemon",
    "hold",
    "kept_daemons",
    "list_daemons",
    "log_size",
    "read_daemon",
    "restart_daemon",
    "start_daemon",
    "stop_daemons",
    "wait_for_output",
]


@dataclass(frozen=True)
class DaemonInfo:
    name: str
    pid: int
    argv: list[str]
    started_at: str
    log_path: Path
    keep: bool = False
    """The keeper starts it again when it exits without being stopped."""
    restarts: int = 0
    """How often the keeper has started it again (since ``start``)."""
    streak: int = 0
    """Restarts in a row without a stable run between them (the back-off's exponent)."""
    held: bool = False
    """Kept, but left down while held (a killed agent's replica, until it is revived)."""


def _pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def _is_ours(pid: int, argv: list[str]) -> bool:
    """Whether ``pid`` still runs the command we started (not a reused pid)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] == argv


def find_daemon(run_dir: Path, logs_dir: Path, name: str) -> DaemonInfo | None:
    """The running daemon ``name``, or ``None`` (a stale pidfile is removed)."""
    info = read_daemon(run_dir, logs_dir, name)
    if info is None:
        return None
    if not daemon_alive(info):
        if not info.keep:
            _pidfile(run_dir, name).unlink(missing_ok=True)
        return None
    return info


def read_daemon(run_dir: Path, logs_dir: Path, name: str) -> DaemonInfo | None:
    """Daemon ``name``'s record, alive or not; ``None`` without one (a broken one is removed)."""
    path = _pidfile(run_dir, name)
    try:
        data = json.loads(path.read_text())
        return DaemonInfo(
            name,
            int(data["pid"]),
            list(data["argv"]),
            str(data["started_at"]),
            logs_dir / f"{name}.log",
            bool(data.get("keep", False)),
            int(data.get("restarts", 0)),
            int(data.get("streak", 0)),
            bool(data.get("held", False)),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None


def daemon_names(run_dir: Path) -> list[str]:
    """The names of every daemon with a pidfile, alive or not."""
    return sorted(p.stem for p in run_dir.glob("*.json")) if run_dir.is_dir() else []


def daemon_alive(info: DaemonInfo) -> bool:
    """The daemon's process runs, and is still the command that was started (no pid reuse)."""
    return pid_alive(info.pid) and _is_ours(info.pid, info.argv)


def kept_daemons(run_dir: Path, logs_dir: Path) -> list[DaemonInfo]:
    """Every daemon the keeper looks after, alive or not."""
    if not run_dir.is_dir():
        return []
    found = (read_daemon(run_dir, logs_dir, p.stem) for p in sorted(run_dir.glob("*.json")))
    return [d for d in found if d is not None and d.keep]


def daemons_down(run_dir: Path, logs_dir: Path) -> list[DaemonInfo]:
    """Kept daemons whose process is gone: being started again, or held down."""
    return [d for d in kept_daemons(run_dir, logs_dir) if not daemon_alive(d)]


def list_daemons(run_dir: Path, logs_dir: Path) -> list[DaemonInfo]:
    if not run_dir.is_dir():
        return []
    found = (find_daemon(run_dir, logs_dir, p.stem) for p in sorted(run_dir.glob("*.json")))
    return [d for d in found if d is not None]


def start_daemon(
    run_dir: Path, logs_dir: Path, name: str, argv: list[str], *, keep: bool = False
) -> DaemonInfo:
    """Start ``argv`` detached as daemon ``name``; refuses if it already runs. ``keep``: the
    keeper, when one runs, starts it again whenever it exits without being stopped."""
    existing = find_daemon(run_dir, logs_dir, name)
    if existing is not None:
        raise ServerError(
            f"daemon {name} already runs (pid {existing.pid}); stop it with `swarmlog down`"
        )
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = logs_dir / f"{name}.log"
    pid = spawn_detached(argv, log_path, time.monotonic() + 10.0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"pid": pid, "argv": argv, "started_at": started, "keep": keep}
    write_private_json(_pidfile(run_dir, name), record)
    return DaemonInfo(name, pid, argv, started, log_path, keep)


def hold(run_dir: Path, name: str, held: bool) -> bool:
    """Hold daemon ``name`` (the keeper leaves it down: a killed agent) or let it go again (the
    keeper starts it again if it is down: a revived one); ``False`` when it has no pidfile."""
    path = _pidfile(run_dir, name)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    if record.get("held", False) != held:
        record["held"] = held
        write_private_json(path, record)
    return True


def restart_daemon(run_dir: Path, info: DaemonInfo, streak: int) -> DaemonInfo:
    """Start the daemon of ``info`` again with its command line, counting the restart; the
    pidfile is rewritten only if it still names the dead process (a stop removes it first)."""
    path = _pidfile(run_dir, info.name)
    if read_daemon(run_dir, info.log_path.parent, info.name) != info:
        return info  # stopped, or started anew by someone else, meanwhile
    pid = spawn_detached(info.argv, info.log_path, time.monotonic() + 10.0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    restarts = info.restarts + 1
    record = {
        "pid": pid,
        "argv": info.argv,
        "started_at": started,
        "keep": True,
        "restarts": restarts,
        "streak": streak,
    }
    write_private_json(path, record)
    return DaemonInfo(info.name, pid, info.argv, started, info.log_path, True, restarts, streak)


def log_size(logs_dir: Path, name: str) -> int:
    """How far daemon ``name``'s log goes now (where to look for what it says next)."""
    try:
        return (logs_dir / f"{name}.log").stat().st_size
    except FileNotFoundError:
        return 0


def wait_for_output(info: DaemonInfo, line: str, offset: int, timeout: float) -> None:
    """Wait until the daemon's log has ``line`` after ``offset``; a daemon that exits first or
    stays silent past ``timeout`` is an error naming its log."""
    deadline = time.monotonic() + timeout
    wanted = line.encode()
    while True:
        try:
            with info.log_path.open("rb") as f:
                f.seek(offset)
                if wanted in f.read():
                    return
        except FileNotFoundError:
            pass
        if not pid_alive(info.pid):
            raise ServerError(f"{info.name} exited while starting; see its log: {info.log_path}")
        if time.monotonic() > deadline:
            raise ServerError(
                f"{info.name} did not come up within {timeout:.0f} s; see its log: {info.log_path}"
            )
        time.sleep(0.05)  # polling a file another process writes


def stop_daemons(
    run_dir: Path, logs_dir: Path, names: list[str], timeout: float = 10.0
) -> list[str]:
    """Stop several daemons at once: SIGTERM to all, then each gets what is left of ``timeout``
    before SIGKILL (so N daemons take as long as the slowest, not the sum). The ones that ran."""
    running = [d for d in (find_daemon(run_dir, logs_dir, n) for n in names) if d is not None]
    for name in names:  # first: the keeper must not start again what is being stopped
        record = read_daemon(run_dir, logs_dir, name)
        if record is not None and record.keep:
            _pidfile(run_dir, name).unlink(missing_ok=True)
    for info in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for info in running:
        terminate(info.pid, max(0.1, deadline - time.monotonic()), partial(wait_pid_gone, info.pid))
        _pidfile(run_dir, info.name).unlink(missing_ok=True)
    return [d.name for d in running]
