"""Event ids: ULIDs built from an injected clock and injected entropy (no global state)."""

from __future__ import annotations

__all__ = ["event_id_time_ms", "new_event_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_SHIFTS = range(120, -1, -10)


def new_event_id(now_ns: int, entropy: bytes) -> str:
    """Return a ULID for time ``now_ns`` and 10 bytes of ``entropy``.

    Ids sort by time; the caller supplies the clock and the randomness, so a simulation or a replay
    produces the same ids.
    """
    if len(entropy) != 10:
        raise ValueError("a ULID needs exactly 10 bytes of entropy")
    value = ((now_ns // 1_000_000) & ((1 << 48) - 1)) << 80 | int.from_bytes(entropy, "big")
    # 130 bits (the top two zero) as 13 pairs of base32 characters: the hot path of sealing.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def event_id_time_ms(event_id: str) -> int:
    """The millisecond timestamp encoded in a ULID."""
    value = 0
    for c in event_id[:10]:
        value = value << 5 | _DECODE[c]
    return value
