"""Running an attack as a hostile agent: a separate process that holds one agent's secret and
nothing else, as a compromised agent process would.

The test side (:func:`attack`) copies the agent's seed out of the key store into the process's
environment, with the server's URL and the namespace, and runs a snippet of Python in a fresh
interpreter whose working directory is an empty folder (not the data dir). The snippet defines
``async def main(me: Attacker) -> object``; whatever it returns is printed as JSON and handed
back to the test. The attacker may import swarmlog (it has the code, as any attacker would) but
has no other key: it logs in with its own nkey and signs with its own Ed25519 key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

_PRELUDE = """
import asyncio, json, sys
sys.path.insert(0, {here!r})
from hostile import Attacker, _run, heard
"""


def attack(
    cli: Any, agent_id: str, code: str, *, timeout: float = 60, keys_dir: Path | None = None
) -> Any:
    """Run ``code`` (defining ``async def main(me)``) as ``agent_id`` in a process of its own;
    its JSON result. ``cli`` is the e2e :class:`clikit.Cli` of the running system; ``keys_dir``
    holds the agent's secret when the operator's key store does not."""
    return Running(cli, agent_id, code, keys_dir).result(timeout)


class Running:
    """An attack started in the background (:func:`attack` waits for it at once). The snippet
    may ``print(json.dumps(...), flush=True)`` as it goes; :meth:`said` waits for such a line,
    and :meth:`tell` hands it a line on its standard input (``await heard()`` in the snippet),
    so the test can look at the system between two steps of the attack."""

    def __init__(self, cli: Any, agent_id: str, code: str, keys_dir: Path | None = None) -> None:
        """``keys_dir``: where the agent's secret is, when not in the operator's key store (a
        key made elsewhere, such as an auditor's)."""
        from swarmlog.control.keystore import KeyStore
        from swarmlog.control.system import resolve_url

        settings = cli.settings()
        identity = KeyStore(keys_dir or settings.keys_dir).agent_identity(agent_id)
        credential = next(c for c in KeyStore(settings.keys_dir).agents() if c.agent_id == agent_id)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
        env |= {
            "HOSTILE_AGENT": agent_id,
            "HOSTILE_SEED": identity.seed.hex(),
            "HOSTILE_TRUST": credential.trust_level,
            "HOSTILE_URL": resolve_url(settings),
            "HOSTILE_NAMESPACE": settings.namespace,
        }
        source = _PRELUDE.format(here=str(HERE)) + textwrap.dedent(code) + "\n_run(main)\n"
        self._empty = tempfile.TemporaryDirectory()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", source],
            env=env,
            cwd=self._empty.name,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: list[str] = []

    def said(self, key: str) -> Any:
        """Wait for the next line printed with ``key`` in its JSON object; its value."""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:  # ends when the process does: the test fails below
            self._lines.append(line)
            said = json.loads(line)
            if isinstance(said, dict) and key in said:
                return said[key]
        raise AssertionError(f"the attack ended without saying {key!r}: {self._stderr()}")

    def tell(self, line: str) -> None:
        """Hand the attack one line (what ``await heard()`` returns there)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def result(self, timeout: float = 60) -> Any:
        try:
            out, err = self._proc.communicate(timeout=timeout)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.communicate()
            self._empty.cleanup()
        assert self._proc.returncode == 0, f"the attack script itself failed:\n{err}"
        return json.loads((("".join(self._lines)) + out).strip().splitlines()[-1])

    def _stderr(self) -> str:
        self._proc.kill()
        _, err = self._proc.communicate()
        return str(err)


@dataclass
class Attacker:
    """What the hostile process holds: its agent id, its own seed, the server's address."""

    agent_id: str
    seed: bytes
    trust_level: str
    url: str
    namespace: str
    errors: list[str] = field(default_factory=list)
    """Every error the server sent this connection (permission violations, ...)."""

    @classmethod
    def from_env(cls) -> Attacker:
        return cls(
            agent_id=os.environ["HOSTILE_AGENT"],
            seed=bytes.fromhex(os.environ["HOSTILE_SEED"]),
            trust_level=os.environ["HOSTILE_TRUST"],
            url=os.environ["HOSTILE_URL"],
            namespace=os.environ["HOSTILE_NAMESPACE"],
        )

    @property
    def login(self) -> Any:
        from swarmlog.bus.permissions import login_for

        return login_for(self.agent_id, self.seed, self.trust_level)

    @property
    def identity(self) -> Any:
        from swarmlog.schemas.signing import Identity

        return Identity.from_seed(self.agent_id, self.seed)

    async def connect(self) -> Any:
        """A raw nats-py connection with this agent's own login."""
        import nats

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        login = self.login
        return await nats.connect(
            self.url,
            nkeys_seed_str=login.seed,
            inbox_prefix=login.inbox_prefix,
            error_cb=on_error,
            allow_reconnect=False,
        )


async def heard() -> str:
    r"""The next line the test :meth:`~Running.tell`\ s this process (without its newline)."""
    return (await asyncio.to_thread(sys.stdin.readline)).rstrip("\n")


def _run(main: Any) -> None:
    me = Attacker.from_env()
    result = asyncio.run(main(me))
    print(json.dumps(result, default=str))
