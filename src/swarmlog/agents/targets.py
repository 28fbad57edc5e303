"""Agent targets: what ``agent start`` and ``keys issue`` name, a built-in role (``router``) or
``module:Class``, resolved to a role or an :class:`~swarmlog.agents.api.Agent` subclass.

The operator's tools (issuing, the Kubernetes checks) read a target's role and capabilities
from here without the process shell; an agent process loads its class from here too.
"""

from __future__ import annotations

import importlib
import os
import sys

from swarmlog.agents.api import Agent
from swarmlog.errors import ConfigError
from swarmlog.schemas.signing import CONDUCTOR_ROLE, ROUTER_ROLE, WATCHDOG_ROLE

__all__ = ["BUILTIN_TARGETS", "builtin_role", "load_agent"]

BUILTIN_TARGETS = {"router": ROUTER_ROLE, "conductor": CONDUCTOR_ROLE, "watchdog": WATCHDOG_ROLE}
"""Built-in roles ``agent start`` takes by name instead of ``module:Class``."""


def builtin_role(target: str) -> str | None:
    """The role of a built-in target (``router``), or ``None`` for ``module:Class``."""
    return BUILTIN_TARGETS.get(target)


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
