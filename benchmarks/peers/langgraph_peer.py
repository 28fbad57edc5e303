"""The LangGraph peer of ``bench tasks``: supervisor -> worker no-op tasks in one process,
checkpointed by LangGraph's SQLite checkpointer (a file, as a deployment would keep it).

Two shapes, both timed; the faster is the peer's figure (the comparison favours the peer):

- ``loop``: one graph run in which the supervisor hands the worker one task after another
  (each step checkpointed), the shape of LangGraph's supervisor examples;
- ``run_per_task``: one graph run (its own thread id) per task, supervisor then worker.

Prints one JSON object.

    .venv/bin/python benchmarks/peers/langgraph_peer.py --tasks 2000 --dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph


class Loop(TypedDict):
    done: int
    tasks: int
    current: str


class OneTask(TypedDict):
    task_id: str
    assigned: bool
    output: str


def loop_rate(tasks: int, folder: Path) -> float:
    graph = StateGraph(Loop)
    graph.add_node("supervisor", lambda s: {"current": f"t{s['done']}"})
    graph.add_node("worker", lambda s: {"done": s["done"] + 1})  # the no-op handler
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", lambda s: "worker" if s["done"] < s["tasks"] else END)
    graph.add_edge("worker", "supervisor")
    with SqliteSaver.from_conn_string(str(folder / "loop.sqlite")) as saver:
        app = graph.compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "loop"}, "recursion_limit": 3 * tasks + 10}
        start = time.perf_counter()
        out = app.invoke({"done": 0, "tasks": tasks, "current": ""}, config)
        seconds = time.perf_counter() - start
    assert out["done"] == tasks
    return tasks / seconds


def run_per_task_rate(tasks: int, folder: Path, warmup: int = 50) -> float:
    graph = StateGraph(OneTask)
    graph.add_node("supervisor", lambda s: {"assigned": True})
    graph.add_node("worker", lambda s: {"output": s["task_id"]})
    graph.add_edge(START, "supervisor")
    graph.add_edge("supervisor", "worker")
    graph.add_edge("worker", END)
    with SqliteSaver.from_conn_string(str(folder / "runs.sqlite")) as saver:
        app = graph.compile(checkpointer=saver)

        def one(task_id: str) -> None:
            config: Any = {"configurable": {"thread_id": task_id}}
            out = app.invoke({"task_id": task_id, "assigned": False, "output": ""}, config)
            assert out["output"] == task_id

        for i in range(warmup):
            one(f"warm{i}")
        start = time.perf_counter()
        for i in range(tasks):
            one(f"t{i}")
        return tasks / (time.perf_counter() - start)


def run(tasks: int, folder: Path) -> dict[str, Any]:
    shapes = {"loop": loop_rate(tasks, folder), "run_per_task": run_per_task_rate(tasks, folder)}
    return {
        "peer": "langgraph",
        "versions": {
            "langgraph": version("langgraph"),
            "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite"),
        },
        "tasks": tasks,
        "tasks_per_s": round(max(shapes.values()), 1),
        "shapes": {k: round(v, 1) for k, v in shapes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.tasks, args.dir)))


if __name__ == "__main__":
    main()
