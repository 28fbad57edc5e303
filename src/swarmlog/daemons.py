"""Detached daemons with pidfiles and log files under the data dir.

``<data dir>/run/<name>.json`` records ``{"pid", "argv", "started_at"}`` (mode 0600);
``<data dir>/logs/<name>.log`` is the daemon's output. A pidfile whose process is gone, or is not
a swarmlog process any more (pid reuse), is stale and removed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from swarmlog.errors import ServerError
from swarmlog.processes import (
    pid_alive,
    spawn_detached,
    terminate,
    wait_pid_gone,
    write_private_json,
)

__all__ = ["DaemonInfo", "find_daemon", "list_daemons", "start_daemon", "stop_daemon"]


@dataclass(frozen=True)
class DaemonInfo:
    name: str
    pid: int
    argv: list[str]
    started_at: str
    log_path: Path


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
    path = _pidfile(run_dir, name)
    try:
        data = json.loads(path.read_text())
        info = DaemonInfo(
            name,
            int(data["pid"]),
            list(data["argv"]),
            str(data["started_at"]),
            logs_dir / f"{name}.log",
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not pid_alive(info.pid) or not _is_ours(info.pid, info.argv):
        path.unlink(missing_ok=True)
        return None
    return info


def list_daemons(run_dir: Path, logs_dir: Path) -> list[DaemonInfo]:
    if not run_dir.is_dir():
        return []
    found = (find_daemon(run_dir, logs_dir, p.stem) for p in sorted(run_dir.glob("*.json")))
    return [d for d in found if d is not None]


def start_daemon(run_dir: Path, logs_dir: Path, name: str, argv: list[str]) -> DaemonInfo:
    """Start ``argv`` detached as daemon ``name``; refuses if it already runs."""
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
    write_private_json(_pidfile(run_dir, name), {"pid": pid, "argv": argv, "started_at": started})
    return DaemonInfo(name, pid, argv, started, log_path)


def stop_daemon(run_dir: Path, logs_dir: Path, name: str, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; ``False`` when it was not running."""
    info = find_daemon(run_dir, logs_dir, name)
    if info is None:
        return False
    terminate(info.pid, timeout, lambda t: wait_pid_gone(info.pid, t))
    _pidfile(run_dir, name).unlink(missing_ok=True)
    return True
