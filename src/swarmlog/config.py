"""Settings shared by every command: data dir, NATS URL, namespace; and where things live."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from swarmlog.errors import ConfigError
from swarmlog.paths import Below

__all__ = ["DEFAULT_NAMESPACE", "Settings"]

DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Settings:
    """Where swarmlog keeps its files and which log it talks to."""

    data_dir: Path
    """Root of keys, the embedded server's store, projections, pidfiles and logs."""
    nats_url: str | None = None
    """An external NATS server or cluster; ``None`` means the embedded server."""
    namespace: str = DEFAULT_NAMESPACE
    """Separates independent swarms on one server: one stream per namespace."""

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ConfigError(
                f"namespace {self.namespace!r} is not valid: use 1-32 lower-case letters, digits,"
                " '_' or '-', starting with a letter or digit"
            )

    keys_dir = Below("data_dir", "keys")
    """The keys and credentials (a :class:`~swarmlog.control.keystore.KeyStore`)."""
    server_dir = Below("data_dir", "nats")
    """The embedded nats-server's store."""
    run_dir = Below("data_dir", "run")
    """Pidfiles of daemons."""
    logs_dir = Below("data_dir", "logs")
    checkpoints_dir = Below("data_dir", "checkpoints")
    """Signed stream-chain checkpoints (``audit checkpoint`` writes them here by default)."""

    @property
    def projection_path(self) -> Path:
        return self.data_dir / "projections" / f"{self.namespace}.duckdb"

    def require_data_dir(self) -> None:
        """Raise a clear error when the data dir does not exist yet."""
        if not self.data_dir.is_dir():
            raise ConfigError(
                f"data dir {self.data_dir} does not exist; run `swarmlog up` (or `swarmlog keys"
                " init`) first, or pass --data-dir"
            )
