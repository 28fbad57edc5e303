"""Confining an agent process to the files it needs (Linux Landlock), before it loads a handler.

An agent daemon runs as the same OS user as the operator's CLI, so file modes alone cannot keep
its handler away from ``<data dir>/keys/operator.seed``, other agents' seeds, the stream's files
or the projection. Once the process has read its own key (and nothing else of the data dir), it
calls :func:`confine`: from then on the kernel lets it open only what :func:`agent_grants` names
(the Python installation, the project's modules, the working directory, a few devices and its own
``/proc`` entry) and nothing under the data dir but its own temp dir, ``<data dir>/tmp/<agent>``.

Landlock is an allow-list of directory trees: a rule on a folder grants every file beneath it, so
a granted folder that holds the data dir (the working directory holding ``./.swarmlog``) is split
by :func:`plan` into rules on its other entries. Only file *names* in the data dir stay listable.

Where the kernel has no Landlock (before Linux 5.13, or switched off) the agent logs one warning
and runs unconfined. A process started as root also gives up every capability, since several of
them (loading a kernel module, BPF, raw I/O) step around any LSM; it keeps its uid, so files it
could read before stay readable where the rules allow (a switch to an unprivileged uid would
lose the Python installation and the project's files, often private to the operator).

The syscalls go through ctypes (the PyPI binding is an alpha without the signal and socket
scopes); the planning part (:func:`agent_grants`, :func:`plan`) is pure.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarmlog.errors import ConfigError

__all__ = [
    "PATHS_ENV",
    "Confinement",
    "Grant",
    "Right",
    "agent_grants",
    "confine",
    "landlock_abi",
    "plan",
]

log = logging.getLogger(__name__)

PATHS_ENV = "SWARMLOG_AGENT_PATHS"
"""Extra folders an agent may read and write (``os.pathsep``-separated); never the data dir."""

# Access rights, <linux/landlock.h>, in the kernel's bit order (EXECUTE is 1 << 0). REFER came
# with ABI 2, TRUNCATE with ABI 3, IOCTL_DEV with ABI 5: the ABI version says which it knows.
Right = enum.IntFlag(
    "Right",
    "EXECUTE WRITE_FILE READ_FILE READ_DIR REMOVE_DIR REMOVE_FILE MAKE_CHAR MAKE_DIR MAKE_REG"
    " MAKE_SOCK MAKE_FIFO MAKE_BLOCK MAKE_SYM REFER TRUNCATE IOCTL_DEV",
)
_FILE_RIGHTS = Right.EXECUTE | Right.WRITE_FILE | Right.READ_FILE | Right.TRUNCATE | Right.IOCTL_DEV
"""The only rights a rule on a file (not a folder) may carry."""

READ = Right.READ_FILE | Right.READ_DIR | Right.EXECUTE
_MAKE = Right.MAKE_DIR | Right.MAKE_REG | Right.MAKE_SOCK | Right.MAKE_FIFO | Right.MAKE_SYM
_CHANGE = Right.WRITE_FILE | Right.REMOVE_DIR | Right.REMOVE_FILE | Right.REFER | Right.TRUNCATE
WRITE = READ | _CHANGE | _MAKE
DEVICE = Right.READ_FILE | Right.WRITE_FILE | Right.IOCTL_DEV

_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6: no connecting to sockets of unconfined processes
_SCOPE_SIGNAL = 1 << 1  # ABI 6: no signals to processes outside the sandbox (the projector)

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every arch
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_CAP_LAST = 63  # dropping a capability the kernel does not have is refused (EINVAL), harmlessly


@dataclass(frozen=True)
class Grant:
    """A file or folder tree the agent may use, with Landlock access rights."""

    path: Path
    access: int
    is_dir: bool = True


@dataclass(frozen=True)
class Confinement:
    """What :func:`confine` applied."""

    abi: int
    """The kernel's Landlock ABI version."""
    rules: int
    """How many path rules the sandbox has."""
    tmp: Path | None
    """The agent's own temp dir (``TMPDIR``), emptied when it starts."""


def agent_grants(
    *,
    cwd: Path,
    sys_path: Iterable[str],
    prefixes: Iterable[str],
    extra: Iterable[Path] = (),
    pid: int,
) -> list[Grant]:
    """What an agent process needs: the system's libraries and configuration, the Python
    installation and every folder on ``sys_path`` (read), the working directory (read: the
    project's modules and files, like ``examples/``), ``extra`` (read and write), a few devices
    and its own ``/proc`` entry. Not ``/proc`` as a whole (``/proc/kcore``, other processes), nor
    ``/dev`` as a whole (disks), nor ``/tmp`` (shared with every process), nor the home
    directory."""
    read = [Path(p) for p in ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/sys")]
    read += [Path(p) for p in prefixes]
    read += [Path(p) if p else cwd for p in sys_path]
    read.append(cwd)
    grants = [Grant(p, READ) for p in read]
    # Often a link out of /etc (to /run/...): the rule is put on the file it points at.
    grants += [Grant(Path("/etc/resolv.conf"), Right.READ_FILE, is_dir=False)]
    procs = ("cpuinfo", "meminfo", "stat", "loadavg", "uptime", "version", "filesystems")
    grants += [Grant(Path("/proc", name), Right.READ_FILE, is_dir=False) for name in procs]
    grants.append(Grant(Path("/proc", str(pid)), READ))
    devices = ("null", "zero", "full", "random", "urandom")
    grants += [Grant(Path("/dev", name), DEVICE, is_dir=False) for name in devices]
    grants.append(Grant(Path("/dev/shm"), WRITE))  # multiprocessing's semaphores
    grants += [Grant(p, WRITE) for p in extra]
    return grants


def plan(
    grants: Sequence[Grant], hidden: Sequence[Path], entries: Callable[[Path], list[Grant]]
) -> list[Grant]:
    """``grants`` with every ``hidden`` tree left out: a grant inside one is dropped; a folder
    holding one is replaced by a listing right on it and the same grant on each of its
    ``entries`` (resolved paths, recursively split). Paths are resolved already."""
    planned: list[Grant] = []
    for grant in grants:
        if any(grant.path.is_relative_to(h) for h in hidden):
            continue
        if not grant.is_dir or not any(h.is_relative_to(grant.path) for h in hidden):
            planned.append(grant)
            continue
        planned.append(Grant(grant.path, Right.READ_DIR if grant.access & Right.READ_DIR else 0))
        inner = [
            Grant(e.path, grant.access if e.is_dir else grant.access & _FILE_RIGHTS, e.is_dir)
            for e in entries(grant.path)
        ]
        planned += plan(inner, hidden, entries)
    return [g for g in planned if g.access]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    abi = int(libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION))
    return max(abi, 0)


def confine(data_dir: Path, *, name: str) -> Confinement | None:
    """Confine this process, agent ``name`` (see the module docstring): it can no longer open
    anything under ``data_dir`` but its temp dir. ``None``, with one warning logged, where the
    kernel cannot."""
    abi = landlock_abi()
    if abi < 1:
        log.warning(
            "%s runs unconfined: this kernel has no Landlock, so its handler can read every file"
            " this OS user can, the operator key included; run agents in a container or pod of"
            " their own (see docs/security.md)",
            name,
        )
        return None
    extra = [Path(p) for p in os.environ.get(PATHS_ENV, "").split(os.pathsep) if p]
    wanted = agent_grants(
        cwd=Path.cwd(),
        sys_path=sys.path,
        prefixes={sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix},
        extra=extra,
        pid=os.getpid(),
    )
    resolved = [r for g in wanted if (r := _resolved(g)) is not None]
    rules = plan(resolved, [data_dir.resolve()], _entries)
    tmp = _own_tmp(data_dir / "tmp" / name)
    rules += [Grant(tmp, WRITE)] if tmp else []  # the one tree of the data dir it may use
    if os.geteuid() == 0:
        _drop_capabilities()
    _restrict(rules, abi)
    return Confinement(abi, len(rules), tmp)


def _resolved(grant: Grant) -> Grant | None:
    """The grant on the real path (what the kernel will see), or ``None`` if it is missing."""
    try:
        path = grant.path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    is_dir = path.is_dir()
    return Grant(path, grant.access if is_dir else grant.access & _FILE_RIGHTS, is_dir)


def _entries(folder: Path) -> list[Grant]:
    """The entries of a (resolved) folder, links left out: the kernel checks a link's target
    where it lies, so a rule on the folder never reached through its links either."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    return [Grant(c, 0, c.is_dir()) for c in children if not c.is_symlink()]


def _own_tmp(folder: Path) -> Path | None:
    """``folder``, emptied, as the process's temp dir (``TMPDIR``). Not in the shared ``/tmp``:
    one more place to leave and find things (it may hold the data dir, too). Under the data dir,
    one per agent, so a process that is killed leaves nothing behind for long."""
    try:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        folder = folder.resolve()
    except OSError:  # a read-only file system: no temp files then
        return None
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    return folder


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _handled(abi: int) -> int:
    rights = (1 << 13) - 1
    rights |= Right.REFER if abi >= 2 else 0
    rights |= Right.TRUNCATE if abi >= 3 else 0
    rights |= Right.IOCTL_DEV if abi >= 5 else 0
    return rights


def _restrict(rules: Sequence[Grant], abi: int) -> None:
    """Create a ruleset handling every file right the kernel knows, add ``rules``, and enforce
    it on this process (and every thread and child it has from now on)."""
    libc = ctypes.CDLL(None, use_errno=True)
    handled = _handled(abi)
    attr = _RulesetAttr(handled, 0, _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels refuse fields they lack
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        _fail("create a Landlock ruleset")
    try:
        for rule in rules:
            try:
                fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone since it was planned: nothing to grant
            try:
                beneath = ctypes.byref(_PathBeneathAttr(rule.access & handled, fd))
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, beneath, 0):
                    _fail(f"add a Landlock rule for {rule.path}")
            finally:
                os.close(fd)
        # Required to restrict oneself without CAP_SYS_ADMIN; also no setuid gain afterwards.
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            _fail("set no_new_privs")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0):
            _fail("enforce the Landlock ruleset")
    finally:
        os.close(ruleset)


def _drop_capabilities() -> None:
    """Give up every capability of a root process: the bounding set (so no child gets one back)
    and the effective, permitted and inheritable sets."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(_CAP_LAST + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    capset = _SYS_CAPSET.get(os.uname().machine)
    if capset is None:
        raise ConfigError(
            f"cannot drop root's capabilities on {os.uname().machine}; run agents as a user"
            " other than root"
        )
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}, all zero
    if libc.syscall(capset, ctypes.byref(header), ctypes.byref(data)):
        _fail("drop root's capabilities")


def _fail(what: str) -> None:
    err = ctypes.get_errno()
    raise ConfigError(
        f"cannot {what}: {os.strerror(err)}; the agent does not run unconfined on a kernel that"
        " has Landlock (see docs/security.md)"
    )
