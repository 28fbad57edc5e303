"""A swarm's agent: indexes a folder of documents with no coordinator.

    swarmlog agent start examples.indexer:Indexer --replicas 2 --detach
    swarmlog submit swarm --input '{"tasks": [{"id": "index", "capability": "index",
        "input": {"folder": "examples/docs"}}]}' --wait

A folder task posts one task per document back to the log (swarm mode: any indexer may claim
it); a document task counts its terms. The workflow ends when no task is open.
"""

from __future__ import annotations

from examples.files import allowed, top_terms, words
from swarmlog import Agent, Context, TaskAssignment, TaskOffered, on


class Indexer(Agent):
    role = "indexer"
    capabilities = ("index",)
    swarm = True

    @on(TaskAssignment)
    async def index(self, task: TaskAssignment, ctx: Context) -> object:
        if "folder" in task.input:
            docs = sorted(allowed(str(task.input["folder"])).glob("*.md"))
            for i, doc in enumerate(docs, 1):
                await ctx.emit(
                    TaskOffered(
                        task_id=f"{task.task_id}-{i}",
                        capability="index",
                        mode="swarm",
                        input={"path": str(doc)},
                        parent_task_id=task.task_id,
                    )
                )
            return {"posted": len(docs)}
        path = allowed(str(task.input["path"]))
        text = path.read_text(encoding="utf-8")
        return {
            "document": path.name,
            "words": len(words(text)),
            "terms": dict(top_terms(text, 5)),
            "by": ctx.agent_id,
        }
