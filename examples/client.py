"""Driving swarmlog from Python with ``swarmlog.Client``: submit a workflow, follow its events
as they happen, wait for its outcome, read its tasks; then one task on its own. Run it against a
running system with the echo agent::

    export SWARMLOG_DATA=$(mktemp -d)/d
    swarmlog up --detach
    swarmlog agent start examples.echo:Echo --detach
    python -m examples.client          # or: python -m examples.client --data-dir DIR
    swarmlog down

It prints each event of the workflow as the log gets it (who sent it, whether the projector
verified it), the outcome, the tasks, and exits 1 if anything did not succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import swarmlog


async def main(data_dir: str | None) -> int:
    async with await swarmlog.Client.connect(data_dir=data_dir) as client:
        # The same options as `swarmlog submit pipeline --stage text --stage text --data ...`.
        wf = await client.submit_workflow(
            "pipeline", stages=["text", "text"], data={"text": "hello", "work_ms": 300}
        )
        print(f"submitted {wf.workflow_id} at seq {wf.seq}")

        # Every event of the workflow as it comes; following ends at its completion.
        async for event in client.events(workflow_id=wf.workflow_id, follow=True):
            mark = {True: "verified", False: f"QUARANTINED ({event.problem})", None: "..."}
            kind, sender = event.type or "?", event.sender or "?"
            print(f"  {event.seq:>5} {kind:<20} {sender:<14} {mark[event.verified]}")

        try:
            view = await client.wait(wf.workflow_id, timeout=60)
        except swarmlog.WaitTimeout as exc:  # says what holds it up, e.g. no agent for "text"
            print(exc, file=sys.stderr)
            return 1
        print(f"workflow {view.workflow_id} {view.status}: {view.result}")
        for task in await client.tasks(workflow_id=wf.workflow_id):
            print(f"  task {task.task_id} {task.status} by {task.agent} (attempt {task.attempt})")

        # One task on its own, routed to whoever has the capability.
        sent = await client.submit_task("text", "a single task", priority="high")
        done = await client.wait_task(sent.task_id, timeout=60)
        print(f"task {done.task_id} {done.status}: {done.output}")
        return 0 if view.status == done.status == "succeeded" else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="default: $SWARMLOG_DATA, else ./.swarmlog")
    sys.exit(asyncio.run(main(parser.parse_args().data_dir)))
