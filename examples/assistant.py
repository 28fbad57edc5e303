"""An LLM agent with tools: the time from a real MCP server (``mcp-server-time``, over stdio) and
a word count in Python. Run it with

    swarmlog agent start examples.assistant:Assistant --detach
    swarmlog submit pipeline --stage assist --data '"What time is it in UTC?"' --wait

Its credential grants exactly what it declares (``word_count`` and the ``time`` server's tools),
so a call of any other tool is refused by the runtime and quarantined by the verifier. Every
model call and tool call is a signed event pair: ``swarmlog calls`` lists them, and a retry of
the task answers the calls already made from that journal instead of making them again.

With no model configured for its tier it runs on the offline model, which follows
``offline_script``: first it calls both tools, then it answers. Set ``SWARMLOG_MODEL_DEFAULT``
(see docs/agents.md) and a real model decides instead.
"""

from __future__ import annotations

import sys

from swarmlog import LLMAgent, MCPServer, tool

QUESTION = "What time is it in UTC?"


class Assistant(LLMAgent):
    role = "assistant"
    capabilities = ("assist",)
    system_prompt = (
        "You answer questions about the time and about texts. Ask the tools; never guess the time."
    )
    mcp_servers = (
        # The server from PyPI, run by this interpreter (the project's environment).
        MCPServer(
            name="time",
            command=(sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"),
        ),
    )
    cache_ttl = 3600.0  # the same question again is answered from the result cache
    offline_script = (
        {
            "tool_calls": [
                {"name": "time.get_current_time", "arguments": {"timezone": "UTC"}},
                {"name": "word_count", "arguments": {"text": QUESTION}},
            ]
        },
        {"content": "The time server and the word counter answered; see the tool calls."},
    )

    @tool
    def word_count(self, text: str) -> int:
        """How many words a text has."""
        return len(text.split())
