"""The projection tables: one definition shared by the DuckDB store, the pure reference state
and the state hash, so they cannot drift apart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["FOLD_REVISION", "LAYOUT", "META_DDL", "TABLES", "Table", "table"]


@dataclass(frozen=True)
class Table:
    """A projection table: ordered columns (name, DuckDB type) and its primary key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    doc: str = ""
    append_only: bool = False
    """Rows are only ever inserted (never updated or deleted): plain INSERT, no lookups."""
    derived: str = ""
    """A ``SELECT`` over other tables that gives exactly this table's rows: storage holds it as
    a view and a commit writes none of it, while the fold keeps its rows in memory like any
    table's (and the state hash reads the view, so a wrong derivation shows as a mismatch)."""
    column_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Computed once: the fold and the store read it for every row.
        object.__setattr__(self, "column_names", tuple(name for name, _ in self.columns))

    def ddl(self) -> str:
        if self.derived:
            return f"CREATE VIEW IF NOT EXISTS {self.name} AS {self.derived}"
        cols = ", ".join(f"{name} {type_}" for name, type_ in self.columns)
        if self.append_only:
            # No index to maintain: a row is inserted once, in the same transaction as the
            # projector's position, so the key stays unique without one.
            return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"
        keys = ", ".join(self.key)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, PRIMARY KEY ({keys}))"


_S, _I, _B = "VARCHAR", "BIGINT", "BOOLEAN"


def _by_seq(name: str, doc: str, *columns: tuple[str, str]) -> Table:
    """An append-only table with a row per stream message, keyed by its sequence."""
    return Table(name, (("seq", _I), *columns), ("seq",), doc, append_only=True)


def _journal(name: str, doc: str, *columns: tuple[str, str]) -> Table:
    """A call journal table (:mod:`swarmlog.projections.calls`): a row per task and call index,
    first which call it is, then ``columns`` (what kind of call says), then when it was
    requested and completed, and how it failed."""
    return Table(
        name,
        (
            ("task_id", _S),
            ("call_index", _I),
            ("workflow_id", _S),
            ("agent_id", _S),
            ("call_id", _S),
            *columns,
            ("requested_seq", _I),
            ("completed_seq", _I),
            ("requested_at", _I),
            ("completed_at", _I),
            ("error", _S),
        ),
        ("task_id", "call_index"),
        doc,
    )


TABLES: tuple[Table, ...] = (
    _by_seq(
        "events",
        "The audit trail: every applied event, by stream sequence.",
        ("subject", _S),
        ("id", _S),
        ("type", _S),
        ("workflow_id", _S),
        ("correlation_id", _S),
        ("causation_id", _S),
        ("sender", _S),
        ("recipient", _S),
        ("signer", _S),
        ("sender_seq", _I),
        ("hash", _S),
        ("occurred_at", _I),
        ("stored_at", _I),
        ("verified", _B),
        ("payload", _S),
    ),
    _by_seq(
        "quarantine",
        "Every message that was not applied, with the reason; ``hash`` set when it still moved its"
        " sender's chain on (an in-chain reason).",
        ("subject", _S),
        ("reason", _S),
        ("detail", _S),
        ("event_id", _S),
        ("sender", _S),
        ("size", _I),
        ("sender_seq", _I),
        ("hash", _S),
        ("stored_at", _I),
    ),
    _by_seq(
        "chain_breaks",
        "Gaps in a sender's chain (applied, but evidence of a missing event).",
        ("sender", _S),
        ("expected_seq", _I),
        ("got_seq", _I),
    ),
    Table(
        "chain_heads",
        (("sender", _S), ("sender_seq", _I), ("hash", _S), ("seq", _I)),
        ("sender",),
        "Each sender's chain head: its last event applied or quarantined in chain.",
        # Every message that moves a chain on leaves its row in `events` (applied) or, with
        # its hash, in `quarantine` (in chain): the head is the latest of them. A table of its
        # own cost each commit an UPDATE per sender (0.5-0.7 ms each, measured in the latency
        # benchmark's trace: a task's two commits paid three).
        derived="SELECT sender, arg_max(sender_seq, seq) AS sender_seq, arg_max(hash, seq) AS hash,"
        " max(seq) AS seq FROM (SELECT sender, sender_seq, hash, seq FROM events UNION ALL"
        " SELECT sender, sender_seq, hash, seq FROM quarantine WHERE hash IS NOT NULL) AS moved"
        " GROUP BY sender",
    ),
    Table(
        "credentials",
        (
            ("public_key", _S),
            ("agent_id", _S),
            ("role", _S),
            ("trust_level", _S),
            ("capabilities", _S),
            ("allowed_types", _S),
            ("tools", _S),
            ("mcp_servers", _S),
            ("issued_at", _I),
            ("expires_at", _I),
            ("revoked", _B),
            ("revoked_reason", _S),
            ("issued_seq", _I),
        ),
        ("public_key",),
        "Operator-issued agent keys.",
    ),
    Table(
        "agents",
        (
            ("agent_id", _S),
            ("role", _S),
            ("capabilities", _S),
            ("trust_level", _S),
            ("public_key", _S),
            ("status", _S),
            ("tier", _S),
            ("replica", _S),
            ("dependencies", _S),
            ("tools", _S),
            ("mcp_servers", _S),
            ("registered_at", _I),
            ("last_heartbeat_at", _I),
            ("in_flight", _I),
            ("updated_seq", _I),
        ),
        ("agent_id",),
        "Agents: credential, registration (its tools pinned), status (issued, registered,"
        " stopped, lost, killed); liveness and load now live in the presence bucket"
        " (last_heartbeat_at and in_flight: from registration, and old logs' heartbeats).",
    ),
    Table(
        "kill_switches",
        (("target", _S), ("active", _B), ("reason", _S), ("updated_seq", _I)),
        ("target",),
        "Operator kill switches: an agent id, or * for every agent.",
    ),
    Table(
        "workflows",
        (
            ("workflow_id", _S),
            ("pattern", _S),
            ("status", _S),
            ("input", _S),
            ("result", _S),
            ("plan", _S),
            ("plan_version", _I),
            ("budget_tokens", _I),
            ("submitted_by", _S),
            ("submitted_at", _I),
            ("completed_at", _I),
            ("updated_seq", _I),
        ),
        ("workflow_id",),
        "Workflows and their status.",
    ),
    Table(
        "tasks",
        (
            ("task_id", _S),
            ("workflow_id", _S),
            ("role", _S),
            ("capability", _S),
            ("priority", _S),
            ("mode", _S),
            ("status", _S),
            ("attempt", _I),
            ("assigned_by", _S),
            ("claimed_by", _S),
            ("completed_by", _S),
            ("parent_task_id", _S),
            ("input", _S),
            ("output", _S),
            ("error", _S),
            ("cached", _B),
            ("call_tokens", _I),
            ("created_at", _I),
            ("updated_at", _I),
            ("updated_seq", _I),
        ),
        ("task_id",),
        "Tasks and their lifecycle.",
    ),
    Table(
        "waits_for",
        (
            ("ref", _S),
            ("kind", _S),
            ("waiter", _S),
            ("waits_on", _S),
            ("task_id", _S),
            ("workflow_id", _S),
            ("since", _I),
        ),
        ("ref",),
        "The wait-for graph: open waits (clarifications, delegated subtasks).",
    ),
    Table(
        "clarifications",
        (
            ("request_id", _S),
            ("asker", _S),
            ("asked", _S),
            ("task_id", _S),
            ("workflow_id", _S),
            ("asked_at", _I),
            ("answered_at", _I),
        ),
        ("request_id",),
        "Every clarification request, open or answered: who asked whom (only they may answer).",
    ),
    Table(
        "escalations",
        (
            ("escalation_id", _S),
            ("task_id", _S),
            ("workflow_id", _S),
            ("reason", _S),
            ("status", _S),
            ("created_at", _I),
            ("resolution", _S),
            ("resolved_at", _I),
        ),
        ("escalation_id",),
        "Work handed to a human.",
    ),
    Table(
        "budgets",
        (
            ("scope", _S),
            ("scope_id", _S),
            ("used_tokens", _I),
            ("reserved_tokens", _I),
            ("soft_exceeded", _B),
            ("hard_exceeded", _B),
        ),
        ("scope", "scope_id"),
        "Token usage per agent and per workflow.",
    ),
    _journal(
        "model_calls",
        "Every journaled model call of a task: requested, then ok or error.",
        ("model", _S),
        ("status", _S),
        ("prompt_tokens", _I),
        ("completion_tokens", _I),
        ("duration_ms", _I),
        ("digest", _S),
        ("reserved_tokens", _I),
        ("admitted", _B),
        ("holding_tokens", _I),
    ),
    _journal(
        "tool_calls",
        "Every journaled tool call of a task: requested, then ok, error or refused.",
        ("tool", _S),
        ("server", _S),
        ("status", _S),
        ("digest", _S),
        ("definition", _S),
        ("duration_ms", _I),
    ),
    Table(
        "breakers",
        (("circuit", _S), ("state", _S), ("reason", _S), ("changed_at", _I)),
        ("circuit",),
        "Circuit breaker states.",
    ),
)
"""Every projection table, in the order the state hash visits them."""

_BY_NAME = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    return _BY_NAME[name]


FOLD_REVISION = 3
"""Bumped when the fold gives events already on the log another meaning with the same tables
(2: one open escalation per task, closed with its workflow; 3: a signed event's third element
is its batch proof, junk there is malformed), so a projection folded by the old
rules is refused and refolded instead of kept subtly different from a replay."""

META_DDL = (
    # The position is the last sequence the rows hold: every message folded leaves one, in
    # `events` (applied) or `quarantine` (not), committed with the rest of its batch. A table
    # of its own cost every commit one more statement (an UPDATE, ~0.4 ms: a tenth of a
    # one-event commit, measured). DuckDB answers the maxima of what it checkpointed from its
    # statistics and scans what came since: the projector answers its own position from memory.
    "CREATE VIEW IF NOT EXISTS projector_position AS SELECT max(seq) AS seq FROM"
    " (SELECT max(seq) AS seq FROM events UNION ALL SELECT max(seq) AS seq FROM quarantine)",
    "CREATE TABLE IF NOT EXISTS projection_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
)
"""The bookkeeping beside the tables (not in the state hash): the projector's position, and
what the file is bound to."""

LAYOUT = hashlib.sha256(
    "\n".join([f"fold revision {FOLD_REVISION}", *(t.ddl() for t in TABLES), *META_DDL]).encode()
).hexdigest()[:16]
"""Names the tables' layout and the fold's rules: a projection file (or snapshot) written with
another must be rebuilt from the log."""
