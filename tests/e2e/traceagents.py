"""An LLM agent for test_traces.py (imported by daemons as ``tests.e2e.traceagents``)."""

from __future__ import annotations

from swarmlog import LLMAgent, tool


class Counter(LLMAgent):
    """Counts the words of its input with a tool, asked by the model of its tier."""

    role = "counter"
    capabilities = ("count",)
    system_prompt = "Count the words with the tool, then say how many."

    @tool
    def word_count(self, text: str) -> int:
        """How many words ``text`` has."""
        return len(text.split())
