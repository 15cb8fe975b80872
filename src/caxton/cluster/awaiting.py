"""`AwaitingCommit`: entries an owning node delivered and will announce once committed.

An owner that answers a batch of first sends as delivered (``pending``, `wire.Acks`) commits
it afterwards and says so in a commit notice (`wire.Notice`). Until then the sender keeps
those entries here, out of its rounds and out of what a reload of the outbox brings back:
the notice settles them (their rows are deleted), and entries whose notice has not come by
their deadline are sent again (not as first sends: the owner may have them).

Entries are kept by ``seq`` (negative for messages sent early, `Speculation`). A notice
counts only for entries its node answered as pending. Deadlines are kept per answer, oldest
first, so a round looks at one deadline. Loop thread only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from caxton.storage.outbox import OutboxEntry

__all__ = ["COMMIT_TIMEOUT", "AwaitingCommit"]

#: Seconds an entry answered as pending waits for its commit notice before it is sent again.
COMMIT_TIMEOUT = 5.0


class AwaitingCommit:
    """Entries delivered by their owner, waiting for its commit notice (module docstring)."""

    def __init__(self, timeout: float = COMMIT_TIMEOUT) -> None:
        self.timeout = timeout
        self._entries: dict[int, OutboxEntry] = {}
        #: (deadline, seqs) of each answer, oldest first.
        self._deadlines: deque[tuple[float, list[int]]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, seq: object) -> bool:
        return seq in self._entries

    def hold(self, entries: Iterable[OutboxEntry], now: float) -> None:
        """These entries were answered as pending now."""
        seqs = []
        for entry in entries:
            self._entries[entry.seq] = entry
            seqs.append(entry.seq)
        if seqs:
            self._deadlines.append((now + self.timeout, seqs))

    def settle(self, node: str, seqs: Sequence[int]) -> list[OutboxEntry]:
        """``node`` announced these ``seq`` committed: the entries it settles."""
        entries = self._entries
        done: list[OutboxEntry] = []
        for seq in seqs:
            entry = entries.get(seq)
            if entry is not None and entry.node == node:
                del entries[seq]
                done.append(entry)
        return done

    def due(self, now: float) -> bool:
        """Whether an answer's deadline has passed."""
        return bool(self._deadlines) and self._deadlines[0][0] <= now

    def expire(self, now: float) -> list[OutboxEntry]:
        """The entries whose notice did not come by ``now`` (no longer kept)."""
        deadlines, entries = self._deadlines, self._entries
        late: list[OutboxEntry] = []
        while deadlines and deadlines[0][0] <= now:
            for seq in deadlines.popleft()[1]:
                entry = entries.pop(seq, None)
                if entry is not None:
                    late.append(entry)
        return late
