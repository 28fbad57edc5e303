"""Process plumbing shared by the embedded server and the daemons: spawn detached, probe, stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from swarmlog.errors import ServerError

__all__ = [
    "POLL_MAX",
    "POLL_MIN",
    "cap_malloc_arenas",
    "pid_alive",
    "spawn_detached",
    "terminate",
    "wait_child",
    "wait_pid_gone",
]

_M_ARENA_MAX = -8  # glibc's malloc.h
POLL_MIN = 0.01
POLL_MAX = 0.1
# How long to wait for the process to die after SIGKILL; SIGKILL cannot be ignored, so this only
# covers the kernel tearing the process down.
_KILL_GRACE = 5.0
# Daemonise without os.fork (unsafe in a threaded interpreter): a throwaway shell in a new session
# backgrounds the program, prints its pid and exits, so the program is reparented to init and is
# never our child (no zombie, no Popen left to warn about).
_DETACH_SCRIPT = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc at ``arenas`` arenas for the threads this process starts from now on
    (``False`` where the C library is not glibc). By default each thread that allocates may get
    an arena of its own, up to eight per core, and a long-running process whose threads take
    turns at the work (a reader, a verify pool, DuckDB's) keeps every one of them resident:
    the projector's RSS grew with the log that way (docs/benchmarks.md)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def spawn_detached(argv: Sequence[str], log_path: Path, deadline: float) -> int:
    """Start ``argv`` in a new session, not as our child; return its pid."""
    with subprocess.Popen(
        ["/bin/sh", "-c", _DETACH_SCRIPT, "sh", str(log_path), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as shell:
        try:
            out, _ = shell.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            shell.kill()
            shell.communicate()
            raise ServerError(f"could not launch {argv[0]} in the background") from None
    try:
        return int(out.strip())
    except ValueError:
        raise ServerError(
            f"could not launch {argv[0]} in the background (shell exit {shell.returncode})"
        ) from None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` names a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    # A zombie still answers kill(0); on Linux, its state says it is gone. This matters when the
    # process was our child and nobody has reaped it, or PID 1 in a container does not reap.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    return not (fields and fields[0] in ("Z", "X"))


def terminate(pid: int, timeout: float, wait: Callable[[float], bool]) -> None:
    """SIGTERM ``pid``, give it ``timeout`` seconds, then SIGKILL; ``wait(t)`` says if it exited."""
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, _KILL_GRACE)):
        # Already gone is fine: wait() still reaps it if it is our child.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait(grace):
            return
    raise ServerError(f"process {pid} did not exit after SIGKILL")


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    interval = POLL_MIN
    while pid_alive(pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, POLL_MAX)
    return True
