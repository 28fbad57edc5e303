"""The model layer: conversations in, assistant messages out.

- :mod:`~swarmlog.agents.llm.messages`: the types (``Message``, ``ToolCall``, ``ToolSpec``,
  ``ChatRequest``, ``Reply``) and the :class:`Model` protocol (pure);
- :mod:`~swarmlog.agents.llm.offline`: the deterministic offline model, which can follow a
  script of tool calls (pure);
- :mod:`~swarmlog.agents.llm.openai_chat`: any OpenAI-compatible endpoint, on the ``openai`` SDK
  (imported only when a call is made), with the request built by
  :mod:`~swarmlog.agents.llm.wire` (pure);
- :mod:`~swarmlog.agents.llm.tiers`: which model a tier uses (``SWARMLOG_MODEL_<TIER>``).
"""

from swarmlog.agents.llm.messages import ChatRequest, Message, Model, Reply, ToolCall, ToolSpec
from swarmlog.agents.llm.offline import OfflineModel
from swarmlog.agents.llm.openai_chat import OpenAIChat
from swarmlog.agents.llm.tiers import model_from_env

__all__ = [
    "ChatRequest",
    "Message",
    "Model",
    "OfflineModel",
    "OpenAIChat",
    "Reply",
    "ToolCall",
    "ToolSpec",
    "model_from_env",
]
