"""The ``eventsourcing`` peer of ``bench publish`` and ``bench replay``: the library's
application on its SQLite persistence (a file), in one process, unsigned.

- ``saved``: events/s recorded: one task aggregate per save, created and completed (two
  events, one transaction), the way an application records a unit of work;
- ``read``: events/s read back in order from the application's notification log and folded
  into a projection (tasks by status), as a projector would (pages of 1,000 from the recorder).

Prints one JSON object.

    .venv/bin/python benchmarks/peers/eventsourcing_peer.py --events 20000 --dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Task(Aggregate):
    @event("Offered")
    def __init__(self, task_id: str, text: str) -> None:
        self.task_id = task_id
        self.text = text
        self.status = "offered"

    @event("Completed")
    def complete(self, output: str) -> None:
        self.status = "succeeded"
        self.output = output


class Tasks(Application[Any]):
    pass


def run(events: int, folder: Path) -> dict[str, Any]:
    app = Tasks(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / "eventsourcing.sqlite"),
        }
    )
    tasks = events // 2
    text = "summarise this " * 8  # the same input as swarmlog's benchmark events
    start = time.perf_counter()
    for i in range(tasks):
        task = Task(f"t{i}", text)
        task.complete(f"t{i}")
        app.save(task)
    saved_s = time.perf_counter() - start

    start = time.perf_counter()
    statuses: dict[str, str] = {}
    read = 0
    position = 1
    while True:
        page = app.recorder.select_notifications(start=position, limit=1000)
        if not page:
            break
        for notification in page:
            domain_event = app.mapper.to_domain_event(notification)
            name = type(domain_event).__name__
            statuses[str(domain_event.originator_id)] = (
                "succeeded" if name == "Completed" else "offered"
            )
            read += 1
        position = page[-1].id + 1
    read_s = time.perf_counter() - start
    by_status = Counter(statuses.values())
    assert read == 2 * tasks
    assert by_status == {"succeeded": tasks}
    return {
        "peer": "eventsourcing",
        "versions": {"eventsourcing": version("eventsourcing")},
        "events": 2 * tasks,
        "saved_events_per_s": round(2 * tasks / saved_s, 1),
        "read_events_per_s": round(read / read_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.dir)))


if __name__ == "__main__":
    main()
