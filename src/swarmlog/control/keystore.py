"""Keys and credentials on disk, under ``<data dir>/keys``; secrets are mode 0600.

::

    keys/
    ├── operator.seed            the operator's Ed25519 seed (hex), 0600: the root of trust
    ├── operator.pub             its public key (hex): all a reader needs
    └── agents/
        ├── <agent>.seed         the agent's seed (hex), 0600
        ├── <agent>.cred         its operator-signed credential (msgpack), 0644
        └── <agent>.login        for a key made elsewhere (no .seed here): its NATS login's
                                 public nkey, 0644

An agent's key may be made elsewhere (``swarmlog keys generate`` on the auditor's machine, an
HSM, a Kubernetes secret): the operator then holds only its public key, in the credential, and
its login's public nkey, which is derived from the secret and so must be given too.
"""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec

from swarmlog.bus.permissions import Login, login_for, valid_login_key
from swarmlog.errors import KeyStoreError, SchemaError
from swarmlog.files import write_atomic, write_private
from swarmlog.paths import Below
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import CredentialIssued
from swarmlog.schemas.signing import OPERATOR_ID, Identity

__all__ = ["KeyStore"]

_issued_decoder = msgspec.msgpack.Decoder(CredentialIssued)


class KeyStore:
    """The operator key and agent keys of one data dir."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir

    operator_seed_path = Below("dir", "operator.seed")
    operator_pub_path = Below("dir", "operator.pub")

    def agent_paths(self, agent_id: str) -> tuple[Path, Path]:
        return self.dir / "agents" / f"{agent_id}.seed", self.dir / "agents" / f"{agent_id}.cred"

    def login_path(self, agent_id: str) -> Path:
        """Where the login nkey of an agent whose secret is held elsewhere is kept."""
        return self.dir / "agents" / f"{agent_id}.login"

    def has_agent(self, agent_id: str) -> bool:
        """Whether ``agent_id`` has a key here: its secret, or a credential for a key made
        elsewhere."""
        seed_path, cred_path = self.agent_paths(agent_id)
        return seed_path.exists() or cred_path.exists()

    # --- operator ---------------------------------------------------------------------------------

    def has_operator(self) -> bool:
        return self.operator_seed_path.exists() or self.operator_pub_path.exists()

    def init_operator(self, seed: bytes) -> Identity:
        """Create the operator key from ``seed``; refuses to overwrite an existing one."""
        if self.has_operator():
            raise KeyStoreError(
                f"an operator key already exists in {self.dir}; `swarmlog keys show` prints it"
            )
        identity = Identity.from_seed(OPERATOR_ID, seed)
        _write_secret(self.operator_seed_path, seed.hex())
        _write_public(self.operator_pub_path, identity.public_key)
        return identity

    def operator(self) -> Identity:
        """The operator identity (needs the secret seed)."""
        return Identity.from_seed(OPERATOR_ID, bytes.fromhex(_read_secret(self.operator_seed_path)))

    def operator_public_key(self) -> str:
        """The operator public key: the trust root every reader verifies against."""
        try:
            key = self.operator_pub_path.read_text().strip()
        except FileNotFoundError:
            raise KeyStoreError(
                f"no operator key in {self.dir}; run `swarmlog keys init` (or `swarmlog up`)"
            ) from None
        if len(key) != 64:
            raise KeyStoreError(f"{self.operator_pub_path} is not a hex Ed25519 public key")
        return key

    def login(self, agent_id: str | None = None) -> Login:
        """The NATS login of ``agent_id``, or of the operator (derived from the secret seed).
        An agent's needs only its seed here: an auditor's machine holds no credential."""
        if agent_id is None:
            return login_for(OPERATOR_ID, self.operator().seed)
        return login_for(agent_id, self.agent_identity(agent_id).seed)

    def login_key(self, agent_id: str) -> str:
        """The public nkey ``agent_id`` logs in with: derived from its seed, or, for a key
        made elsewhere, the one given when it was issued."""
        if self.agent_paths(agent_id)[0].exists():
            return self.login(agent_id).public_key
        path = self.login_path(agent_id)
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            raise KeyStoreError(
                f"no key and no login for agent {agent_id!r} in {path.parent}; issue it again"
            ) from None
        if not valid_login_key(key):
            raise KeyStoreError(f"{path} is not an nkey user public key; issue it again")
        return key

    # --- agents -----------------------------------------------------------------------------------

    def save_agent(self, identity: Identity, seed: bytes, issued: CredentialIssued) -> None:
        seed_path, cred_path = self.agent_paths(identity.agent_id)
        if seed_path.exists():
            raise KeyStoreError(
                f"agent {identity.agent_id} already has a key in {seed_path.parent}; choose"
                " another --agent-id"
            )
        seed_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_secret(seed_path, seed.hex())
        # Written whole or not at all: a concurrent `agent start` reads every credential.
        write_atomic(cred_path, msgspec.msgpack.encode(issued), mode=0o644)

    def save_public_agent(self, agent_id: str, issued: CredentialIssued, login_key: str) -> None:
        """Keep the credential of a key made elsewhere, and its login's public nkey."""
        if self.has_agent(agent_id):
            raise KeyStoreError(
                f"agent {agent_id} already has a key in {self.dir / 'agents'}; choose another"
                " --agent-id"
            )
        _, cred_path = self.agent_paths(agent_id)
        cred_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.login_path(agent_id), login_key + "\n", mode=0o644)
        write_atomic(cred_path, msgspec.msgpack.encode(issued), mode=0o644)

    def create_agent_seed(self, agent_id: str, seed: bytes) -> Path:
        """Write a new agent seed (0600), with no credential: a key made for an operator
        elsewhere to vouch for (``swarmlog keys generate``)."""
        seed_path, _ = self.agent_paths(agent_id)
        if seed_path.exists():
            raise KeyStoreError(f"{seed_path} already exists; it is never overwritten")
        seed_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_secret(seed_path, seed.hex())
        return seed_path

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent key whose credential never reached the log."""
        for path in (*self.agent_paths(agent_id), self.login_path(agent_id)):
            path.unlink(missing_ok=True)

    def agent_identity(self, agent_id: str) -> Identity:
        """An agent's identity, from its secret seed (all an auditor's machine holds)."""
        seed_path, cred_path = self.agent_paths(agent_id)
        if not seed_path.exists():
            if cred_path.exists():
                raise KeyStoreError(
                    f"agent {agent_id!r}'s key was made elsewhere (issued with --public-key):"
                    " it runs where its secret is"
                )
            raise KeyStoreError(
                f"no key for agent {agent_id!r} in {seed_path.parent}; issue one with"
                " `swarmlog keys issue ROLE --agent-id ID`"
            )
        return Identity.from_seed(agent_id, bytes.fromhex(_read_secret(seed_path)))

    def agent(self, agent_id: str) -> tuple[Identity, Credential]:
        """An agent's identity and credential."""
        identity = self.agent_identity(agent_id)
        return identity, _read_credential(self.agent_paths(agent_id)[1])

    def issued(self, agent_id: str) -> CredentialIssued:
        """An agent's credential as the operator signed it (its public ``.cred`` file)."""
        return _read_issued(self.agent_paths(agent_id)[1])[0]

    def agents(self) -> list[Credential]:
        """Every agent credential in the store."""
        folder = self.dir / "agents"
        if not folder.is_dir():
            return []
        return [_read_credential(path) for path in sorted(folder.glob("*.cred"))]


def _read_credential(path: Path) -> Credential:
    return _read_issued(path)[1]


def _read_issued(path: Path) -> tuple[CredentialIssued, Credential]:
    """A ``.cred`` file: the operator-signed form and the credential it carries."""
    try:
        issued = _issued_decoder.decode(path.read_bytes())
        return issued, decode_credential(issued.credential)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError, SchemaError) as exc:
        raise KeyStoreError(
            f"cannot read credential {path}: {exc}; remove or re-issue it"
        ) from None


def _write_secret(path: Path, text: str) -> None:
    try:
        write_private(path, text + "\n", exclusive=True)
    except FileExistsError:
        raise KeyStoreError(f"{path} already exists; it is never overwritten") from None


def _write_public(path: Path, text: str) -> None:
    write_atomic(path, text + "\n", mode=0o644)


def _read_secret(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyStoreError(
            f"no key at {path}; run `swarmlog keys init` (or `swarmlog up`) first"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )
    text = path.read_text().strip()
    if len(text) != 64:
        raise KeyStoreError(f"{path} is not a 32-byte hex seed")
    return text
