"""The rule that settles a name hosted on two nodes, and the record of each conflict.

A name can end up on two nodes when it was deployed on both sides of a partition (each side
checks only the registry it can see). When the registries meet again, every node applies the
same rule to the same entries and so agrees without talking: **the copy deployed first wins**
(the earlier ``deployed_at``, the wall time of its first deploy), and on a tie the node whose
name sorts first. The loser's node stops its copy and keeps it stored (versions, key/value
data, history), so the operator can look at it and remove it or move its data; nothing is
deleted by the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Conflict", "conflict_event", "winner"]


def winner(copies: Iterable[tuple[str, float]]) -> str:
    """The node whose copy wins, of ``(node, deployed_at)`` pairs (at least one)."""
    return min(copies, key=lambda copy: (copy[1], copy[0]))[0]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A name found on two nodes, and what became of the loser."""

    name: str
    winner: str
    loser: str
    winner_deployed_at: float
    loser_deployed_at: float
    at: float  # unix seconds when this node saw the conflict
    #: What happened to the loser's copy: "stopped" (by its node, kept stored), "stopping",
    #: "stop failed: ..." (on the loser's node), or "stopped by its node" as others record it.
    action: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "winner": self.winner,
            "loser": self.loser,
            "winner_deployed_at": self.winner_deployed_at,
            "loser_deployed_at": self.loser_deployed_at,
            "at": self.at,
            "action": self.action,
        }


def conflict_event(conflict: Conflict) -> dict[str, object]:
    """The conflict as an event of the node's event stream (``{"type": "conflict", ...}``)."""
    return {"type": "conflict", **conflict.as_dict()}
