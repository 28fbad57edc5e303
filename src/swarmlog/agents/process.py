"""Running agents as processes: load ``module:Class``, run replicas until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys

from swarmlog.agents.api import Agent
from swarmlog.agents.runtime import AgentRuntime
from swarmlog.config import Settings
from swarmlog.errors import ConfigError
from swarmlog.keystore import KeyStore
from swarmlog.publisher import Publisher
from swarmlog.system import open_log

__all__ = ["load_agent", "run_agent", "stop_on_signals"]


def load_agent(target: str) -> type[Agent]:
    """The :class:`Agent` subclass named by ``module:Class``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: targets in the project resolve
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"agent target {target!r} must be module:Class, e.g. examples.echo:Echo")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} ({exc}); check PYTHONPATH") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent) and cls.role):
        raise ConfigError(f"{target} is not an Agent subclass with a role")
    return cls


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (graceful stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_agent(
    settings: Settings,
    target: str,
    agent_id: str,
    replica: str,
    stop: asyncio.Event,
    *,
    ack_wait: float = 30.0,
) -> None:
    """Run one replica until ``stop``; the task in hand finishes first."""
    cls = load_agent(target)
    identity, _ = KeyStore(settings.keys_dir).agent(agent_id)
    async with open_log(settings) as log:
        publisher = Publisher(log, identity, settings.namespace)
        runtime = AgentRuntime(cls(), log, publisher, replica=replica, ack_wait=ack_wait)
        await runtime.start()
        try:
            await runtime.run(stop)
        finally:
            await runtime.close()
