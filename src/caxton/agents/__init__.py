"""Deployed agents: the service the API and the CLI use, and the runtime's SQLite backends.

How an agent's life is kept
---------------------------
A deploy is checked (name, env, limits, duplicate, ``max_agents``), compiled through the
engine's module cache, stored in one transaction (record, version 1, module) and started; if
``caxton_init`` fails the record is deleted again. From then on the store holds everything
needed to bring the agent back: its versions and modules, env, limits, grants, state, counters
and last error, its kv pairs, its memory snapshot when hibernated and its pending timers.

State changes the runtime makes on its own (an agent fails past its restart budget, is
hibernated, is restored by a message) reach the store through `PersistingEvents`, which marks
the agent in `DirtyAgents` for the service's writer; counters are written every few seconds
and on stop, and always as ``persisted base + runtime counters``, so they continue across
restarts. At node start `AgentService.restore_all` brings every agent
back in its stored state, from the compiled-module cache, and re-arms the timers still pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caxton._lazy import lazy_getattr

if TYPE_CHECKING:
    from caxton.agents._model import NAME_PATTERN, AgentInfo, DeployRequest
    from caxton.agents._stats import AgentServiceStatistics, metric_samples
    from caxton.agents.changes import AgentChanges, AgentSummary
    from caxton.agents.service import AgentService
    from caxton.agents.stored import (
        DirtyAgents,
        PersistingEvents,
        StoredKv,
        StoredSnapshots,
        StoredTimers,
    )

# Submodules load on first use, so `import caxton.agents` stays cheap (the CLI and the
# server's first listener do not wait for wasmtime).
_LAZY = {
    "AgentChanges": "caxton.agents.changes",
    "AgentSummary": "caxton.agents.changes",
    "AgentInfo": "caxton.agents._model",
    "AgentService": "caxton.agents.service",
    "AgentServiceStatistics": "caxton.agents._stats",
    "DeployRequest": "caxton.agents._model",
    "DirtyAgents": "caxton.agents.stored",
    "NAME_PATTERN": "caxton.agents._model",
    "PersistingEvents": "caxton.agents.stored",
    "StoredKv": "caxton.agents.stored",
    "StoredSnapshots": "caxton.agents.stored",
    "StoredTimers": "caxton.agents.stored",
    "metric_samples": "caxton.agents._stats",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

__all__ = [
    "NAME_PATTERN",
    "AgentChanges",
    "AgentInfo",
    "AgentService",
    "AgentServiceStatistics",
    "AgentSummary",
    "DeployRequest",
    "DirtyAgents",
    "PersistingEvents",
    "StoredKv",
    "StoredSnapshots",
    "StoredTimers",
    "metric_samples",
]
