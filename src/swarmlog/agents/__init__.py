"""Agents: everything that acts on the log.

- here: the agent API (:mod:`~swarmlog.agents.api`), the publisher every sender uses (the
  operator's too) and the in-process runtime shell (runtime, claims, presence, flag watch);
- :mod:`swarmlog.agents.llm`: the model layer (messages, the offline model, the OpenAI-compatible
  adapter, tiers);
- :mod:`swarmlog.agents.policy`: pure decisions (routing, retry, breakers, deadlocks, stalls,
  plans, workflows, supervision, follow-ups, kill flags, outputs, result-cache entries);
- :mod:`swarmlog.agents.roles`: the built-in roles (router, conductor, watchdog, noop);
- :mod:`swarmlog.agents.host`: an agent as an OS process (session, sandbox, entry points).

Imports schemas, bus and projections; only ``agents.host`` also reads the operator's files
(:mod:`swarmlog.control`). Imported by control, harness, cli and agent authors.
"""
