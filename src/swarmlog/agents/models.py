"""The model layer: a small ``Model`` protocol (chat messages in, text and token usage out) and
two adapters: an OpenAI-compatible HTTP client (hosted APIs and local servers such as vLLM, Ollama
or llama.cpp) and a deterministic offline model, so everything runs with no network and no key.

Tiers map to models by configuration (:func:`model_from_env`)::

    SWARMLOG_MODEL_SMALL=offline
    SWARMLOG_MODEL_LARGE=openai:http://127.0.0.1:11434/v1/llama3.1
    SWARMLOG_MODEL_LARGE_KEY=...            # optional; never logged

A key is sent only as a bearer header and never appears in errors or ``repr``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from swarmlog.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ChatMessage",
    "Completion",
    "Model",
    "OfflineModel",
    "OpenAICompatible",
    "model_from_env",
]


class ChatMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class Completion(msgspec.Struct, frozen=True):
    """A model's answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Model(Protocol):
    """Anything that answers chat messages."""

    @property
    def name(self) -> str: ...

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> Completion: ...


def _tokens(text: str) -> int:
    # A rough, deterministic count (about what tokenizers give for English prose).
    return max(1, len(text.split())) if text else 0


class OfflineModel:
    """A deterministic stand-in: the same messages always give the same answer.

    The answer restates the last user message's first sentence with a short digest of the whole
    conversation, so different inputs give visibly different outputs, and costs are counted.
    """

    def __init__(self, name: str = "offline") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> Completion:
        prompt = "\n".join(f"{m.role}: {m.content}" for m in messages)
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        first_sentence = last.strip().split(". ")[0][:200]
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        text = f"[{self._name} {digest}] {first_sentence}".strip()
        if max_tokens is not None:
            text = " ".join(text.split()[:max_tokens])
        return Completion(text, self._name, _tokens(prompt), _tokens(text))


class _ChatChoiceMessage(msgspec.Struct):
    content: str | None = None


class _ChatChoice(msgspec.Struct):
    message: _ChatChoiceMessage


class _ChatUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _ChatResponse(msgspec.Struct):
    choices: list[_ChatChoice]
    model: str = ""
    usage: _ChatUsage | None = None


class OpenAICompatible:
    """A client of the OpenAI chat-completions API (``POST {base_url}/chat/completions``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._timeout = timeout
        self._transport = transport

    @property
    def name(self) -> str:
        return self.model

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatible({self.base_url!r}, {self.model!r})"

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> Completion:
        body: dict[str, object] = {
            "model": self.model,
            "messages": [msgspec.to_builtins(m) for m in messages],
            "temperature": 0,
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/chat/completions"
        import httpx  # here: an agent without an HTTP model never pays for importing it

        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport
            ) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise ModelError(f"{url} did not answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ModelError(f"cannot reach {url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            retryable = response.status_code == 429 or response.status_code >= 500
            raise ModelError(
                f"{url} answered {response.status_code}: {response.text[:200]}",
                retryable=retryable,
            )
        try:
            parsed = msgspec.json.decode(response.content, type=_ChatResponse)
        except msgspec.DecodeError as exc:
            raise ModelError(
                f"{url} answered something that is not a chat completion: {exc}"
            ) from None
        if not parsed.choices:
            raise ModelError(f"{url} answered with no choices")
        usage = parsed.usage or _ChatUsage()
        return Completion(
            parsed.choices[0].message.content or "",
            parsed.model or self.model,
            usage.prompt_tokens,
            usage.completion_tokens,
        )


def model_from_env(tier: str, env: Mapping[str, str] | None = None) -> Model:
    """The model configured for ``tier`` (``SWARMLOG_MODEL_<TIER>``); offline when unset.

    Values: ``offline`` or ``openai:<base url>/<model>`` (the model is the last path segment),
    with the key, if any, in ``SWARMLOG_MODEL_<TIER>_KEY``.
    """
    env = os.environ if env is None else env
    var = f"SWARMLOG_MODEL_{tier.upper() or 'DEFAULT'}"
    spec = env.get(var, "offline")
    if spec == "offline":
        return OfflineModel(f"offline-{tier or 'default'}")
    if spec.startswith("openai:"):
        base, _, model = spec.removeprefix("openai:").rstrip("/").rpartition("/")
        if not base or not model:
            raise ConfigError(f"{var}={spec!r}: use openai:<base url>/<model name>")
        return OpenAICompatible(base, model, api_key=env.get(f"{var}_KEY"))
    raise ConfigError(f"{var}={spec!r}: use 'offline' or 'openai:<base url>/<model name>'")
