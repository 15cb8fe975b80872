"""The agent service's statistics and the metric records derived from them.

`metric_samples` yields plain tuples in the shape ``observability.SnapshotCollector`` documents
(``(name, kind, labels, value[, help])``); the core never imports the observability package,
the server registers ``node.agents.metric_samples`` as a source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caxton.runtime import AgentState, RuntimeStatistics

__all__ = ["AgentServiceStatistics", "metric_samples"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentServiceStatistics:
    """A snapshot of the agent service."""

    #: Deployed agents.
    agents: int
    #: Agents by state (``running``, ``stopped``, ``failed``, ``hibernated``, ``loaded``).
    by_state: Mapping[str, int]
    #: Successful deploys, failed deploys, upgrades, rollbacks and removals since start.
    deploys: int
    deploy_failures: int
    upgrades: int
    rollbacks: int
    removals: int


def metric_samples(
    agents: AgentServiceStatistics, runtime: RuntimeStatistics
) -> Iterator[Sequence[Any]]:
    """The agent metrics of docs/observability.md, as snapshot-collector records.

    The time agents spend per message is messaging's ``message_processing_duration_seconds``.
    """
    yield ("agents_deployed", "gauge", {}, agents.agents, "Deployed agents.")
    for state in AgentState:
        yield (
            "agents",
            "gauge",
            {"state": state.value},
            agents.by_state.get(state.value, 0),
            "Deployed agents by state.",
        )
    yield (
        "agents_active",
        "gauge",
        {},
        runtime.agents_active,
        "Agents with a live instance (not hibernated, stopped or failed).",
    )
    for status, count in runtime.executions.items():
        yield (
            "agent_executions",
            "counter",
            {"status": status},
            count,
            "Messages handled by agents, by outcome (ok or the failure cause).",
        )
    yield (
        "wasm_memory_usage_bytes",
        "gauge",
        {},
        runtime.memory_bytes,
        "Linear memory of live agent instances.",
    )
    yield ("agent_restarts", "counter", {}, runtime.restarts, "Agent instances restarted.")
    yield (
        "temp_storage_bytes",
        "gauge",
        {},
        runtime.temp_storage_bytes,
        "Bytes of files in agents' granted directories (counted against temp_storage_limit).",
    )
    yield (
        "temp_storage_limit_bytes",
        "gauge",
        {},
        runtime.temp_storage_limit,
        "The runtime.temp_storage_limit setting.",
    )
    yield (
        "temp_storage_writes_refused",
        "counter",
        {},
        runtime.temp_storage_refused,
        "Agent file writes refused with ENOSPC because of temp_storage_limit.",
    )
    yield ("agent_hibernations", "counter", {}, runtime.hibernations, "Agents hibernated.")
    for name, (lines, size) in sorted(runtime.logs_dropped.items()):
        yield (
            "agent_log_dropped",
            "counter",
            {"agent": name},
            lines,
            "Log lines an agent wrote over its log rate budget (dropped).",
        )
        yield (
            "agent_log_dropped_bytes",
            "counter",
            {"agent": name},
            size,
            "Bytes of log lines an agent wrote over its log rate budget (dropped).",
        )
    for op, value in (
        ("deploy", agents.deploys),
        ("deploy_failed", agents.deploy_failures),
        ("upgrade", agents.upgrades),
        ("rollback", agents.rollbacks),
        ("remove", agents.removals),
    ):
        yield (
            "agent_lifecycle_operations",
            "counter",
            {"operation": op},
            value,
            "Agent lifecycle operations since the node started.",
        )
