"""A debate's agents: independent checkers review a code file, a judge weighs their answers.

    swarmlog agent start examples.codereview:Checker --detach   # check-code
    swarmlog agent start examples.codereview:Judge --detach     # judge
    swarmlog submit debate --question '{"file": "examples/code/inventory.py"}' \\
        --capability check-code --judge judge --debaters 3 --rounds 2 --wait

Each debater looks from its own angle (debater 1 style, 2 bugs, 3 complexity), independently,
with Python's own parser. In a second round each sees the others' answers: it keeps its findings,
marks the lines others flagged too, and reconsiders its verdict. The judge records where they
agree and disagree and writes the synthesis.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from typing import Any

from examples.files import allowed
from swarmlog import Agent, Context, TaskAssignment, on

PERSPECTIVES = ("style", "bugs", "complexity")


def _finding(line: int, rule: str, message: str) -> dict[str, Any]:
    return {"line": line, "rule": rule, "message": message}


def check_style(source: str, tree: ast.Module) -> list[dict[str, Any]]:
    found = []
    for n, line in enumerate(source.splitlines(), 1):
        if len(line) > 100:
            found.append(_finding(n, "long-line", f"{len(line)} characters (at most 100)"))
        if "TODO" in line or "FIXME" in line:
            found.append(_finding(n, "todo", "unfinished work left in the code"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.ClassDef) or node.name.startswith("_"):
            continue
        if ast.get_docstring(node) is None:
            found.append(_finding(node.lineno, "no-docstring", f"{node.name} has no docstring"))
    return found


def check_bugs(source: str, tree: ast.Module) -> list[dict[str, Any]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is None:
            found.append(_finding(node.lineno, "bare-except", "a bare except hides every error"))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"eval", "exec"}
        ):
            found.append(
                _finding(node.lineno, "eval", f"{node.func.id} runs untrusted input as code")
            )
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            found.append(
                _finding(node.lineno, "unclosed-file", "open() outside a with block leaks the file")
            )
        if isinstance(node, ast.FunctionDef):
            for default in node.args.defaults:
                if isinstance(default, ast.Dict | ast.List | ast.Set):
                    found.append(
                        _finding(
                            node.lineno,
                            "mutable-default",
                            "a mutable default is shared between calls",
                        )
                    )
        if (
            isinstance(node, ast.Compare)
            and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
            and any(isinstance(c, ast.Constant) and c.value is None for c in node.comparators)
        ):
            found.append(_finding(node.lineno, "eq-none", "compare with None using 'is'"))
    return found


def _depth(node: ast.AST, level: int = 0) -> int:
    """How deeply blocks nest under ``node``."""
    best = level
    for child in ast.iter_child_nodes(node):
        nests = isinstance(child, ast.If | ast.For | ast.While | ast.With | ast.Try)
        best = max(best, _depth(child, level + 1 if nests else level))
    return best


def check_complexity(source: str, tree: ast.Module) -> list[dict[str, Any]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        params = len(node.args.args) - (
            1 if node.args.args and node.args.args[0].arg == "self" else 0
        )
        if params > 5:
            found.append(
                _finding(node.lineno, "many-params", f"{node.name} takes {params} parameters")
            )
        depth = _depth(node)
        if depth > 3:
            found.append(
                _finding(node.lineno, "deep-nesting", f"{node.name} nests {depth} levels deep")
            )
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > 30:
            found.append(
                _finding(node.lineno, "long-function", f"{node.name} is {length} lines long")
            )
    return found


CHECKS = {"style": check_style, "bugs": check_bugs, "complexity": check_complexity}
SERIOUS = frozenset({"bare-except", "eval", "mutable-default", "deep-nesting"})


def _verdict(findings: list[dict[str, Any]]) -> str:
    return (
        "changes requested"
        if any(f["rule"] in SERIOUS for f in findings) or len(findings) > 4
        else "approve"
    )


class Checker(Agent):
    """Reviews a code file from the angle of its debater number (``…-d1`` style, ``-d2`` bugs,
    ``-d3`` complexity, then round-robin)."""

    role = "checker"
    capabilities = ("check-code",)
    concurrency = 3

    @on(TaskAssignment)
    async def check(self, task: TaskAssignment, ctx: Context) -> object:
        question = task.input["question"]
        ask = (
            json.loads(question)
            if isinstance(question, str) and question.startswith("{")
            else question
        )
        path = allowed(str(ask["file"]))
        source = path.read_text(encoding="utf-8")
        debater = int(task.task_id.rsplit("-d", 1)[1].split("-")[0])
        perspective = PERSPECTIVES[(debater - 1) % len(PERSPECTIVES)]
        findings = CHECKS[perspective](source, ast.parse(source))
        answer: dict[str, Any] = {
            "perspective": perspective,
            "file": path.name,
            "findings": findings,
        }
        answer["verdict"] = _verdict(findings)
        others = {
            k: v for k, v in task.input.get("answers", {}).items() if k != task.input.get("yours")
        }
        if others:  # a refining round: see what the others found
            flagged = {f["line"] for v in others.values() for f in v["findings"]}
            answer["confirmed_by_others"] = sorted({f["line"] for f in findings} & flagged)
            verdicts = Counter([answer["verdict"], *(v["verdict"] for v in others.values())])
            majority, votes = verdicts.most_common(1)[0]
            answer["changed_mind"] = majority != answer["verdict"] and votes > len(verdicts)
            if answer["changed_mind"]:
                answer["verdict"] = majority
        return answer


class Judge(Agent):
    """Compares the debaters' answers: agreement, disagreement and a synthesis."""

    role = "judge"
    capabilities = ("judge",)

    @on(TaskAssignment)
    async def judge(self, task: TaskAssignment, ctx: Context) -> object:
        answers: dict[str, dict[str, Any]] = task.input["answers"]
        verdicts = Counter(a["verdict"] for a in answers.values())
        by_line: dict[int, set[str]] = {}
        for a in answers.values():
            for f in a["findings"]:
                by_line.setdefault(f["line"], set()).add(a["perspective"])
        hotspots = sorted(line for line, who in by_line.items() if len(who) > 1)
        findings = sorted(
            (
                {**f, "perspective": a["perspective"]}
                for a in answers.values()
                for f in a["findings"]
            ),
            key=lambda f: (f["rule"] not in SERIOUS, f["line"]),
        )
        verdict = verdicts.most_common(1)[0][0]
        serious = [f for f in findings if f["rule"] in SERIOUS]
        summary = (
            f"{verdict}: {len(findings)} findings ({len(serious)} serious) from "
            f"{len(answers)} independent checks; lines {hotspots} were flagged from more than"
            " one angle."
        )
        return {
            "verdict": verdict,
            "agreement": {"verdict": len(verdicts) == 1, "hotspot_lines": hotspots},
            "disagreement": {
                "verdicts": dict(verdicts) if len(verdicts) > 1 else {},
                "seen_by_one": sorted(line for line, who in by_line.items() if len(who) == 1),
            },
            "findings": findings,
            "summary": summary,
        }
