"""Where the example agents may read and write: only under the folders they are given.

An agent that opens whatever path a task names would read any file the daemon can; these agents
accept only paths under the examples folder or under a root named by ``SWARMLOG_EXAMPLES_ROOTS``
(``os.pathsep``-separated, for outputs such as the demo's warehouse file).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from swarmlog import TaskError

EXAMPLES = Path(__file__).resolve().parent

STOPWORDS = frozenset(
    """a an and are as at be because by can cheap do does each for from has how if in into is it
    its make makes may more most must no not of on once one only or other so such than that the
    their them then there these they this those to too two up used uses was were what when where
    which while who why will with without would you your after all also any before both every
    first itself just many much new our out over same should some still very""".split()  # noqa: SIM905
)

_WORD = re.compile(r"[a-z][a-z-]+")


def allowed(path: str) -> Path:
    """``path`` resolved, if it is under an allowed root; else a non-retryable error."""
    resolved = Path(path).resolve()
    roots = [EXAMPLES] + [
        Path(r).resolve()
        for r in os.environ.get("SWARMLOG_EXAMPLES_ROOTS", "").split(os.pathsep)
        if r
    ]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise TaskError(
            "forbidden_path", f"{path} is outside the folders this agent may use", retryable=False
        )
    return resolved


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` without the stop words."""
    return [w.strip("-") for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2]


def top_terms(text: str, n: int) -> list[tuple[str, int]]:
    return Counter(words(text)).most_common(n)
