"""Event ids: ULIDs built from an injected clock and injected entropy (no global state)."""

from __future__ import annotations

__all__ = ["event_id_time_ms", "new_event_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}


def new_event_id(now_ns: int, entropy: bytes) -> str:
    """Return a ULID for time ``now_ns`` and 10 bytes of ``entropy``.

    Ids sort by time; the caller supplies the clock and the randomness, so a simulation or a replay
    produces the same ids.
    """
    if len(entropy) != 10:
        raise ValueError("a ULID needs exactly 10 bytes of entropy")
    value = ((now_ns // 1_000_000) & ((1 << 48) - 1)) << 80 | int.from_bytes(entropy, "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def event_id_time_ms(event_id: str) -> int:
    """The millisecond timestamp encoded in a ULID."""
    value = 0
    for c in event_id[:10]:
        value = value << 5 | _DECODE[c]
    return value
