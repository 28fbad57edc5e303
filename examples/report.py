"""A supervisor workflow's workers: a briefing on the documents of a folder.

    swarmlog agent start examples.report:Planner --detach      # plan
    swarmlog agent start examples.report:Librarian --detach    # read, keywords
    swarmlog agent start examples.report:Summarizer --detach   # summarize (a model, small tier)
    swarmlog agent start examples.report:Editor --detach       # review, synthesize
    swarmlog submit supervisor --goal "a briefing" --data '{"folder": "examples/docs"}' \\
        --reviewer review --synthesizer synthesize --wait

The planner turns the goal into a plan: read each document, summarize each, extract keywords
over all of them. The editor reviews every output and writes the briefing from the accepted ones.
"""

from __future__ import annotations

import re
from typing import Any

from examples.files import allowed, top_terms, words
from swarmlog import Agent, Context, TaskAssignment, TaskError, on


class Planner(Agent):
    """Plans a briefing: ``read-N`` → ``sum-N`` per document, and ``keywords`` over all reads.

    Asked to revise (a step failed for good), it plans the failed step again under a new id, and
    whatever depended on it with it; asked again after a rejected plan, it plans from scratch.
    """

    role = "planner"
    capabilities = ("plan",)

    @on(TaskAssignment)
    async def plan(self, task: TaskAssignment, ctx: Context) -> object:
        ask = task.input if isinstance(task.input, dict) else {}
        if "revise" in ask:
            return _replan(ask["revise"])
        source = ask.get("input") or {}
        if not isinstance(source, dict) or "folder" not in source:
            raise TaskError("no_folder", 'the goal needs an input {"folder": ...}', retryable=False)
        folder = allowed(str(source["folder"]))
        docs = sorted(folder.glob("*.md"))
        if not docs:
            raise TaskError("empty_folder", f"no .md documents in {folder}", retryable=False)
        steps: list[dict[str, Any]] = []
        for i, doc in enumerate(docs, 1):
            steps.append(
                {
                    "id": f"read-{i}",
                    "capability": "read",
                    "input": {"path": str(doc)},
                    "description": f"read {doc.name}",
                }
            )
            steps.append(
                {
                    "id": f"sum-{i}",
                    "capability": "summarize",
                    "depends_on": [f"read-{i}"],
                    "description": f"summarize {doc.name}",
                }
            )
        reads = [s["id"] for s in steps if s["capability"] == "read"]
        steps.append(
            {
                "id": "keywords",
                "capability": "keywords",
                "depends_on": reads,
                "description": "keywords",
            }
        )
        return {"steps": steps}


def _replan(revise: dict[str, Any]) -> dict[str, Any]:
    failed = revise["failed"]["step"]
    renamed = {failed: f"{failed}-b"}
    steps = []
    for step in revise["plan"]["steps"]:
        if step["id"] in revise.get("done", {}):
            continue
        step = dict(step)
        step["id"] = renamed.get(step["id"], step["id"])
        step["depends_on"] = [renamed.get(d, d) for d in step.get("depends_on", [])]
        steps.append(step)
    return {"steps": steps}


class Librarian(Agent):
    """Reads documents (``read``) and finds what they are about (``keywords``)."""

    role = "librarian"
    capabilities = ("read", "keywords")
    concurrency = 4

    @on(TaskAssignment)
    async def work(self, task: TaskAssignment, ctx: Context) -> object:
        if task.capability == "read":
            path = allowed(str(task.input["path"]))
            text = path.read_text(encoding="utf-8")
            title = next(
                (line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
                path.stem,
            )
            body = "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()
            return {"path": str(path), "title": title, "text": body, "words": len(body.split())}
        # keywords: over every document read
        docs = [d for d in task.input.values() if isinstance(d, dict)]
        everything = " ".join(d["text"] for d in docs)
        return {
            "overall": [term for term, _ in top_terms(everything, 10)],
            "by_document": {d["title"]: [t for t, _ in top_terms(d["text"], 3)] for d in docs},
        }


class Summarizer(Agent):
    """Summarizes one document: its two most central sentences, and a one-line take from the
    model of its tier (the offline model unless ``SWARMLOG_MODEL_SMALL`` names another)."""

    role = "summarizer"
    capabilities = ("summarize",)
    tier = "small"
    concurrency = 4
    cache_ttl = 3600.0  # the same document summarized again comes from the result cache

    @on(TaskAssignment)
    async def summarize(self, task: TaskAssignment, ctx: Context) -> object:
        (doc,) = task.input.values()
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc["text"]) if s.strip()]
        weight = {w: n for w, n in top_terms(doc["text"], 50)}

        def centrality(sentence: str) -> float:
            found = words(sentence)
            return sum(weight.get(w, 0) for w in found) / (len(found) or 1)

        best = sorted(sorted(sentences, key=centrality, reverse=True)[:2], key=sentences.index)
        summary = " ".join(" ".join(best).split())
        take = await ctx.complete(
            summary, system="In one line, what is this text about?", max_tokens=40
        )
        return {
            "title": doc["title"],
            "summary": summary,
            "take": take,
            "words": doc["words"],
        }


class Editor(Agent):
    """Reviews outputs (``review``: accept, or send back with a reason) and writes the briefing
    from the accepted ones (``synthesize``)."""

    role = "editor"
    capabilities = ("review", "synthesize")
    concurrency = 4

    @on(TaskAssignment)
    async def work(self, task: TaskAssignment, ctx: Context) -> object:
        if task.capability == "review":
            return _review(task.input)
        outputs = task.input["outputs"]
        summaries = [v for k, v in sorted(outputs.items()) if k.startswith("sum-")]
        keywords = outputs.get("keywords", {})
        lines = [f"# Briefing: {task.input['goal']}", ""]
        lines.append(f"{len(summaries)} documents, {sum(s['words'] for s in summaries)} words.")
        lines.append(f"Key terms: {', '.join(keywords.get('overall', []))}.")
        for s in summaries:
            lines += ["", f"## {s['title']}", s["summary"], f"_{s['take']}_"]
        return {"report": "\n".join(lines), "documents": len(summaries)}


def _review(ask: dict[str, Any]) -> dict[str, str]:
    output = ask.get("output")
    capability = ask.get("step", {}).get("capability")
    if not isinstance(output, dict):
        return {"verdict": "retry", "reason": "the output is not an object"}
    if capability == "read" and not output.get("text"):
        return {"verdict": "retry", "reason": "nothing was read"}
    if capability == "summarize":
        if not output.get("summary"):
            return {"verdict": "reassign", "reason": "the summary is empty"}
        if len(output["summary"].split()) >= output.get("words", 0):
            return {"verdict": "retry", "reason": "the summary is no shorter than the document"}
    if capability == "keywords" and len(output.get("overall", [])) < 3:
        return {"verdict": "retry", "reason": "too few keywords"}
    return {"verdict": "accept", "reason": "looks right"}
