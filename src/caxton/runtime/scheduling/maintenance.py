"""Which agents to hibernate: idle ones, and least recently used ones under memory pressure.

Pure functions over agent snapshots, so the policy is tested by tables; `Runtime.maintain()`
applies the result every `gc_interval` (and tests call it directly with a manual clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Candidate", "choose_hibernations"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live reactor agent that could be hibernated."""

    name: str
    last_active: float  # clock seconds
    memory_bytes: int
    busy: bool  # queued messages or currently scheduled


def choose_hibernations(
    candidates: Iterable[Candidate],
    *,
    now: float,
    idle_timeout: float,
    memory_in_use: int,
    memory_limit: int,
    pressure_threshold: float,
    reclaim: bool,
) -> list[str]:
    """Names to hibernate: idle past ``idle_timeout``, then LRU until under the threshold."""
    chosen: list[str] = []
    remaining = memory_in_use
    idle = sorted((c for c in candidates if not c.busy), key=lambda c: c.last_active)
    rest: list[Candidate] = []
    for c in idle:
        if now - c.last_active >= idle_timeout:
            chosen.append(c.name)
            remaining -= c.memory_bytes
        else:
            rest.append(c)
    if reclaim:
        budget = pressure_threshold * memory_limit
        for c in rest:  # least recently used first
            if remaining <= budget:
                break
            chosen.append(c.name)
            remaining -= c.memory_bytes
    return chosen
