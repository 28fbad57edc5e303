"""Tiers map to models by configuration: :func:`model_from_env` reads ``SWARMLOG_MODEL_<TIER>``.

::

    SWARMLOG_MODEL_SMALL=offline                          # the default: no network, no key
    SWARMLOG_MODEL_SMALL_SCRIPT=scripts/tools.json        # optional: the offline model's script

    SWARMLOG_MODEL_LARGE=openai                           # any OpenAI-compatible endpoint
    SWARMLOG_MODEL_LARGE_NAME=meta-llama/llama-3.1-8b-instruct
    SWARMLOG_MODEL_LARGE_BASE_URL=http://127.0.0.1:8000/v1
    SWARMLOG_MODEL_LARGE_KEY=...                          # optional; never logged
    SWARMLOG_MODEL_LARGE_TEMPERATURE=0.2                  # default 0; "none" sends none
    SWARMLOG_MODEL_LARGE_MAX_TOKENS=1024                  # default and cap of an answer
    SWARMLOG_MODEL_LARGE_TIMEOUT=60                       # seconds
    SWARMLOG_MODEL_LARGE_HEADERS={"X-Team": "research"}   # a JSON object; values never logged

The one-line forms ``openai:<base url>#<model name>`` (any name) and, legacy,
``openai:<base url>/<model name>`` (the name is the last path segment, so it cannot hold a
``/``) name the endpoint and model in ``SWARMLOG_MODEL_<TIER>`` itself; the other settings
apply to them too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from swarmlog.agents.llm.messages import Model
from swarmlog.agents.llm.offline import OfflineModel, parse_script
from swarmlog.errors import ConfigError

__all__ = ["DEFAULT_BASE_URL", "model_from_env"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where ``SWARMLOG_MODEL_<TIER>=openai`` goes when ``_BASE_URL`` is not set."""

T = TypeVar("T")


def model_from_env(tier: str, env: Mapping[str, str] | None = None) -> Model:
    """The model configured for ``tier`` (``SWARMLOG_MODEL_<TIER>``); offline when unset.

    Raises :class:`~swarmlog.errors.ConfigError` saying what to set when a value is not usable.
    """
    env = os.environ if env is None else env
    var = f"SWARMLOG_MODEL_{tier.upper() or 'DEFAULT'}"
    spec = env.get(var, "").strip() or "offline"
    if spec == "offline":
        return _offline(f"offline-{tier or 'default'}", var, env)
    if spec == "openai" or spec.startswith("openai:"):
        return _openai(var, spec, env)
    raise ConfigError(
        f"{var}={spec!r}: use 'offline', or 'openai' with {var}_NAME and {var}_BASE_URL",
        parameter=var,
    )


def _offline(name: str, var: str, env: Mapping[str, str]) -> OfflineModel:
    path = env.get(f"{var}_SCRIPT", "")
    if not path:
        return OfflineModel(name)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{var}_SCRIPT={path!r}: cannot read it ({exc.strerror}); set it to a JSON file of"
            " turns the agent process may read (under its working directory)",
            parameter=f"{var}_SCRIPT",
        ) from None
    try:
        return OfflineModel(name, parse_script(data))
    except ValueError as exc:
        raise ConfigError(f"{var}_SCRIPT={path!r}: {exc}", parameter=f"{var}_SCRIPT") from None


def _openai(var: str, spec: str, env: Mapping[str, str]) -> Model:
    from swarmlog.agents.llm.openai_chat import OpenAIChat  # cheap: the SDK loads on first call

    named, based = env.get(f"{var}_NAME", ""), env.get(f"{var}_BASE_URL", "")
    if spec == "openai":
        if not named:
            raise ConfigError(f"{var}=openai: set {var}_NAME to the model's name", parameter=var)
        base, model = based or DEFAULT_BASE_URL, named
    else:
        if named or based:
            raise ConfigError(
                f"{var}={spec!r} names the endpoint and model already: unset {var}_NAME and"
                f" {var}_BASE_URL, or set {var}=openai",
                parameter=var,
            )
        rest = spec.removeprefix("openai:")
        if "#" in rest:
            base, _, model = rest.partition("#")
        else:  # legacy: the model is the last path segment
            base, _, model = rest.rstrip("/").rpartition("/")
        if not base or not model:
            raise ConfigError(
                f"{var}={spec!r}: use openai:<base url>#<model name> (or openai with {var}_NAME"
                f" and {var}_BASE_URL)",
                parameter=var,
            )
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"{var}: the base URL {base!r} is not http(s)://...", parameter=var)
    # the defaults' declared types let the settings that may be None (or empty) be so
    no_headers: dict[str, str] = {}
    zero: float | None = 0.0  # the least random answer, as before per-tier options
    temperature = _setting(env, f"{var}_TEMPERATURE", _temperature, zero)
    headers = _setting(env, f"{var}_HEADERS", _headers, no_headers)
    return OpenAIChat(
        base,
        model,
        api_key=env.get(f"{var}_KEY") or None,
        temperature=temperature,
        max_tokens=_setting(env, f"{var}_MAX_TOKENS", _max_tokens, None),
        timeout=_setting(env, f"{var}_TIMEOUT", _timeout, 60.0),
        headers=headers,
    )


def _setting(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        # the headers' value may hold a secret: their parser's message never quotes it
        shown = "" if name.endswith("_HEADERS") else f"={raw!r}"
        raise ConfigError(f"{name}{shown}: {exc}", parameter=name) from None


def _temperature(raw: str) -> float | None:
    if raw.lower() == "none":
        return None
    value = _number(raw, "use a number from 0 to 2, or 'none' to send none")
    if not 0 <= value <= 2:
        raise ValueError("use a number from 0 to 2, or 'none' to send none")
    return value


def _max_tokens(raw: str) -> int | None:
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("use a whole number of tokens, at least 1")
    return int(raw)


def _timeout(raw: str) -> float:
    value = _number(raw, "use a number of seconds above 0")
    if not value > 0:
        raise ValueError("use a number of seconds above 0")
    return value


def _number(raw: str, hint: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(hint) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(hint)
    return value


def _headers(raw: str) -> dict[str, str]:
    hint = 'use a JSON object of header names and string values, like {"X-Team": "research"}'
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"not JSON; {hint}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(hint)
    return value
