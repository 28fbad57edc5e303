"""An agent process holds its own key and login only: no code path of it reaches the operator's
(the attack test in tests/adversarial/test_operator_seed.py proves it on a running system)."""

from __future__ import annotations

import ast
from pathlib import Path

import swarmlog
from swarmlog.agents.host.session import AgentSession
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import CredentialIssued
from swarmlog.schemas.signing import Identity

SRC = Path(swarmlog.__file__).parent
AGENT_SIDE = [
    "agents/host/entrypoints.py",
    "agents/host/session.py",
    "agents/runtime.py",
    "agents/api.py",
]
# Each logs in as the operator (or, without an agent id, would), or opens the projection file.
OPERATOR_PATHS = {"login_of", "open_log", "open_projections"}


def test_the_agent_side_names_no_operator_path() -> None:
    for module in AGENT_SIDE:
        tree = ast.parse((SRC / module).read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & (OPERATOR_PATHS | {"operator", "operator_seed_path"}), module


def test_a_session_keeps_its_seed_out_of_its_repr() -> None:
    identity = Identity.from_seed("echo-1", bytes(range(32)))
    key = identity.public_key
    credential = Credential(agent_id="echo-1", role="echo", public_key=key, issuer=key, issued_at=0)
    issued = CredentialIssued(credential=b"", signature=bytes(64))
    session = AgentSession("echo-1", identity, credential, issued, "nats://x", "default")
    assert bytes(range(32)).hex() not in repr(session)
    assert "echo-1" in repr(session)
