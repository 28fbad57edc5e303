"""The agent's confinement: which paths it may use (pure planning), and, where the kernel has
Landlock, a real process confined by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swarmlog.agents.host.sandbox import (
    DEVICE,
    READ,
    WRITE,
    Grant,
    Right,
    agent_grants,
    landlock_abi,
    plan,
)

W = Path("/w")
DATA = W / ".swarmlog"
TREE = {
    W: [Grant(W / "src", 0), Grant(DATA, 0), Grant(W / "x.txt", 0, is_dir=False)],
    DATA: [Grant(DATA / "keys", 0), Grant(DATA / "logs", 0)],
}


def _entries(folder: Path) -> list[Grant]:
    return TREE.get(folder, [])


def test_a_grant_holding_the_hidden_tree_is_split_around_it() -> None:
    planned = plan([Grant(W, READ)], [DATA / "keys"], _entries)
    assert set(planned) == {
        Grant(W, Right.READ_DIR),  # names only: imports list the folder
        Grant(W / "src", READ),
        Grant(DATA, Right.READ_DIR),
        Grant(DATA / "logs", READ),
        # a file takes file rights
        Grant(W / "x.txt", Right.READ_FILE | Right.EXECUTE, is_dir=False),
    }
    assert len(planned) == len(set(planned))


def test_grants_inside_a_hidden_tree_go_and_others_stay() -> None:
    grants = [Grant(DATA / "logs", WRITE), Grant(Path("/usr"), READ), Grant(DATA, READ)]
    assert plan(grants, [DATA], _entries) == [Grant(Path("/usr"), READ)]


def test_an_agent_gets_its_own_proc_entry_and_a_few_devices_not_all_of_them() -> None:
    grants = agent_grants(
        cwd=W, sys_path=["", "/site"], prefixes=["/py"], extra=[Path("/out")], pid=42
    )
    paths = {g.path: g.access for g in grants}
    assert paths[Path("/proc/42")] == READ
    assert paths[Path("/dev/urandom")] == DEVICE
    assert paths[Path("/out")] == WRITE
    assert {paths[W], paths[Path("/site")], paths[Path("/py")]} == {READ}
    assert {Path("/proc"), Path("/dev"), Path("/tmp")}.isdisjoint(paths)  # kcore, disks, all
    assert Path.home() not in paths


_CONFINED = """
import json, os, sys, tempfile
from pathlib import Path
from swarmlog.agents.host.sandbox import confine
data = Path(sys.argv[1])
done = confine(data, name="probe-1")
def read(path):
    try:
        return Path(path).read_text()
    except OSError as exc:
        return type(exc).__name__
status = Path("/proc/self/status").read_text()
print(json.dumps({
    "rules": done.rules if done else 0,
    "secret": read(data / "keys" / "operator.seed"),
    "beside": read(data.parent / "beside.txt"),
    "tmp": tempfile.mkstemp()[1],
    "capabilities": [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")],
}))
"""


@pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_confined_process_cannot_read_the_data_dir_but_reads_its_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "operator.seed").write_text("secret")
    (tmp_path / "beside.txt").write_text("open")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CONFINED), str(data)],
        cwd=tmp_path,  # the working directory holds the data dir, as ./.swarmlog does
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    got = json.loads(out.stdout)
    assert got["secret"] == "PermissionError"
    assert got["beside"] == "open"
    assert Path(got["tmp"]).parent == (data / "tmp" / "probe-1").resolve()  # its own, writable
    if os.geteuid() == 0:  # root gives up every capability (they step around any LSM)
        assert got["capabilities"] == ["0000000000000000"]
