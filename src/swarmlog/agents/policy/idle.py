"""How long an idle loop waits before it looks again.

A replica's work queues, its inbox and the router's offers each have a doorbell that rings when
something new is published, so a new task is seen at once however long the wait. What rings no
bell is a redelivery (an ack that never came) and a delayed retry (a ``nak`` with a delay): those
are found only by looking. Looking costs a pull request per queue, for the process and for the
server. So a loop that keeps finding nothing looks less and less often, up to :data:`MOST`;
anything found, or a ring, brings it back to :data:`FIRST`.

Measured on an idle system (2026-12-03): an agent that looked every 0.25 s spent about 2 % of a
core on it, and the server as much again for each agent. A replica's work queues wait at most
:data:`MOST`: with 2 s there, the demo took 41 s instead of 32 (work a replica finds only by
looking, delayed retries among it, was seen up to 2 s late, several times a workflow).
"""

from __future__ import annotations

__all__ = ["FIRST", "MOST", "QUIET_MOST", "next_wait"]

FIRST = 0.25
"""Seconds between looks while there is work about (the wait after anything was found)."""
MOST = 0.5
"""The longest wait between looks at a replica's work queues: how late at most a redelivery or
a delayed retry is seen."""
QUIET_MOST = 2.0
"""The longest wait where every message rings and only a redelivery does not (an inbox)."""


def next_wait(
    previous: float | None, found: bool, *, first: float = FIRST, most: float = MOST
) -> float:
    """The wait before the next look: ``first`` after a look that ``found`` something (or the
    first look, ``previous`` ``None``), else double the ``previous`` wait, at most ``most``."""
    if found or previous is None:
        return first
    return min(most, max(previous, first) * 2)
