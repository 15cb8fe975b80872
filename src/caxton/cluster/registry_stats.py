"""The registry's metric records, for the observability layer's snapshot collector.

Plain tuples from `Registry.statistics` (the registry knows nothing of Prometheus); the node
registers them as the ``registry`` snapshot source when ``cluster_enabled``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from caxton.cluster.registry import Registry

__all__ = ["registry_samples"]


def registry_samples(registry: Registry) -> Iterator[Sequence[Any]]:
    """Metric records of ``registry``: entries by node, conflicts, pulls, announcements."""
    stats = registry.statistics()
    for node, count in sorted(stats.entries.items()):
        yield (
            "cluster_registry_entries",
            "gauge",
            {"node": node},
            count,
            "Agents this node's registry lists, by hosting node.",
        )
    yield (
        "cluster_registry_conflicts",
        "counter",
        {},
        stats.conflicts,
        "Agent names found hosted on two nodes (each settled once).",
    )
    for outcome, value in (("ok", stats.pulls), ("failed", stats.pull_failures)):
        yield (
            "cluster_registry_pulls",
            "counter",
            {"outcome": outcome},
            value,
            "Whole lists pulled from other nodes (after a digest showed this copy old).",
        )
    for direction, value in (
        ("sent", stats.announcements_sent),
        ("received", stats.announcements_received),
    ):
        yield (
            "cluster_registry_announcements",
            "counter",
            {"direction": direction},
            value,
            "Registry change announcements published and heard.",
        )
