"""The adapter for OpenAI-compatible chat endpoints (hosted APIs, vLLM, Ollama, llama.cpp server,
LM Studio, gateways), on the official ``openai`` SDK (``AsyncOpenAI``, chat completions).

``openai`` is imported here, and only when a call is made: it takes about half a second to
import, and an agent on the offline model never pays for it. The key is handed to the SDK (sent
as a bearer header) and never appears in an error or a ``repr``; nor do the values of extra
headers (a gateway's key may travel in one).

The SDK's own retries are off (``max_retries=0``): a failed call raises a
:class:`~swarmlog.errors.ModelError` saying whether to retry, and swarmlog's ``RetryPolicy``
retries the task, with its back-off, its budget and every attempt on the log. Retries hidden in
the SDK would multiply those attempts and make a rate limit look like a slow call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from swarmlog.agents.llm.messages import ChatRequest, Message, Reply, TextSink, ToolCall
from swarmlog.agents.llm.wire import ToolNames, chat_request
from swarmlog.errors import ModelError

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["OpenAIChat"]

_NO_KEY = "unused"
"""What the SDK is given as the key of a keyless endpoint (it insists on one; local servers
ignore the bearer header)."""


class OpenAIChat:
    """A model behind an OpenAI-compatible ``POST {base_url}/chat/completions``.

    ``temperature`` ``None`` sends none (some models take only their own); ``max_tokens`` is the
    tier's default and cap for an answer; ``headers`` are sent with every request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._api_key = api_key

    @property
    def name(self) -> str:
        return self.model

    @property
    def url(self) -> str:
        """Where the calls go."""
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:  # never the key, nor the headers' values
        extra = f", headers={sorted(self.headers)}" if self.headers else ""
        return f"OpenAIChat({self.base_url!r}, {self.model!r}{extra})"

    async def chat(self, request: ChatRequest, *, on_text: TextSink | None = None) -> Reply:
        import openai  # here, not at the top: see the module's docstring

        capped = msgspec.structs.replace(
            request, max_tokens=_least(request.max_tokens, self.max_tokens)
        )
        body, names = chat_request(self.model, capped, temperature=self.temperature)
        # A client per call: it holds a connection pool bound to the running event loop, and a
        # model outlives loops (tests, and agents restarted in one process); a call takes
        # seconds, next to which a new connection is cheap.
        try:
            client = openai.AsyncOpenAI(
                api_key=self._api_key or _NO_KEY,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # swarmlog's RetryPolicy retries the task: see the docstring
                default_headers=self.headers or None,
            )
            async with client:
                if on_text is None:
                    completion = await client.chat.completions.create(**body)
                    return self._reply(completion, names)
                return await self._stream(client, body, names, on_text)
        except _SinkFailed as failed:  # the caller's own error, as it is
            raise failed.error from None
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None

    def _reply(self, completion: ChatCompletion, names: ToolNames) -> Reply:
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ModelError(f"{self.url} answered something that is not a chat completion")
        choice = choices[0]
        calls = tuple(
            ToolCall(id=call.id, name=names.ours(function.name), arguments=function.arguments)
            for call in choice.message.tool_calls or ()
            if (function := getattr(call, "function", None)) is not None
        )
        usage = completion.usage
        return Reply(
            message=Message(
                role="assistant", content=choice.message.content or "", tool_calls=calls
            ),
            model=completion.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "",
        )

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        body: dict[str, Any],
        names: ToolNames,
        on_text: TextSink,
    ) -> Reply:
        stream = await client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        import openai

        answer = _Assembly(self.model)
        try:
            async with stream:
                async for chunk in stream:
                    text = answer.add(chunk)
                    if text:
                        try:
                            await on_text(text)
                        except Exception as exc:
                            raise _SinkFailed(exc) from exc
        except openai.APIConnectionError as exc:
            if isinstance(exc, openai.APITimeoutError):
                raise
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection lost"
            raise ModelError(f"{self.url} broke off its answer ({cause}); try again") from None
        if not answer.chunks:
            raise ModelError(f"{self.url} answered something that is not a stream of chunks")
        return answer.reply(names)

    def _failure(self, exc: openai.OpenAIError) -> ModelError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return ModelError(f"{self.url} did not answer within {self.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            return ModelError(f"cannot reach {self.url}: {cause}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retryable = status in (408, 429) or status >= 500
            return ModelError(
                f"{self.url} answered {status}: {self._redact(_said(exc))}", retryable=retryable
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ModelError(f"{self.url} answered something that is not a chat completion")
        if isinstance(exc, openai.APIError):  # an error event in the middle of a stream
            return ModelError(f"{self.url} broke off its answer: {self._redact(_said(exc))}")
        return ModelError(f"{self.url}: {self._redact(str(exc))[:200]}", retryable=False)

    def _redact(self, text: str) -> str:
        # a server may quote what it was sent; the key and header values never leave here
        for secret in (self._api_key, *self.headers.values()):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


class _SinkFailed(Exception):
    """``on_text`` raised ``error``: not the model's failure, and not to be taken for one."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Assembly:
    """A streamed answer put together: text deltas, and calls of tools whose pieces arrive by
    index (the id and name first, the arguments' text split over later chunks)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.chunks = 0

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Take one chunk in; its text, if any."""
        self.chunks += 1
        self.model = chunk.model or self.model
        if chunk.usage is not None:  # the last chunk (include_usage), with no choices
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.completion_tokens = chunk.usage.completion_tokens
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        for piece in choice.delta.tool_calls or ():
            call = self.calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or (piece.id or "")
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
        text = choice.delta.content or ""
        self.text.append(text)
        return text

    def reply(self, names: ToolNames) -> Reply:
        calls = tuple(
            ToolCall(id=c["id"], name=names.ours(c["name"]), arguments=c["arguments"])
            for c in (self.calls[index] for index in sorted(self.calls))
        )
        return Reply(
            message=Message(role="assistant", content="".join(self.text), tool_calls=calls),
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason=self.finish_reason,
        )


def _least(*limits: int | None) -> int | None:
    given = [n for n in limits if n is not None]
    return min(given) if given else None


def _said(exc: Any) -> str:
    """The error message of an error answer, short (the server's words, not its whole body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
        if message:
            return str(message)[:200]
    if body is not None:
        return str(body)[:200]
    return str(getattr(exc, "message", "") or exc)[:200]
