"""`OutboxView`: the outbox rows the forwarder holds in memory, so it plans without a read.

Every committed outbox row reaches the forwarder with its ``seq`` (`offer`, in commit order,
from the write that inserted it). While the view is **complete** (it holds every row of the
table that is neither in flight nor acknowledged), a round plans from memory: no store read,
no thread hop. The store stays the truth: the view starts incomplete (rows a previous run left)
and becomes incomplete when it would grow past its bounds (a node unreachable for long); then
rounds read the store, and a `load` (every row, when there are few enough) makes it complete
again. Offers that arrive while a load is being read are kept and merged with its result, so
a row committed during the read is never missed.

Ordering: a node's rows are kept in ``seq`` order. `due` gives, for each node the policy would
send to, its first rows in ``seq`` order, stopping a receiver at its first row that is not due
yet or that has an earlier row for another node (the receiver moved): the same head-of-line
rule as the store's `OutboxRepository.due`, so `RetryPolicy.plan` sees the same input either
way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from heapq import merge

from caxton.storage.outbox import OutboxEntry

__all__ = ["MAX_VIEW_BYTES", "MAX_VIEW_ENTRIES", "OutboxView"]

#: The most rows the view holds (beyond, rounds read the store until it drains).
MAX_VIEW_ENTRIES = 20_000
#: The most message bytes the view holds.
MAX_VIEW_BYTES = 64 * 1024 * 1024


def _seq(entry: OutboxEntry) -> int:
    return entry.seq


class OutboxView:
    """In-memory rows by node, in ``seq`` order (module docstring); event-loop thread only."""

    def __init__(
        self, *, max_entries: int = MAX_VIEW_ENTRIES, max_bytes: int = MAX_VIEW_BYTES
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._nodes: dict[str, dict[int, OutboxEntry]] = {}
        #: receiver -> how many rows it has per node (a receiver on two nodes has moved).
        self._receivers: dict[str, Counter[str]] = {}
        self._entries = 0
        self._bytes = 0
        self.complete = False
        #: Offers seen while a load is read (None: no load in progress).
        self._loading: list[OutboxEntry] | None = None

    def __len__(self) -> int:
        return self._entries

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def max_entries(self) -> int:
        return self._max_entries

    # -- filling -------------------------------------------------------------------------------

    def offer(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows just committed (in commit order)."""
        if self._loading is not None:
            self._loading.extend(entries)
        if not self.complete:
            return
        if not self._fits(entries):
            self.clear()  # the store has them: rounds read it until a load fits again
            return
        for entry in entries:
            self._add(entry)

    def begin_load(self) -> None:
        """A read of every row starts now: keep the offers until `end_load`."""
        self._loading = []

    def end_load(
        self, rows: Sequence[OutboxEntry] | None, skip: Callable[[OutboxEntry], bool]
    ) -> bool:
        """The load's rows (None: too many, or the read failed); ``skip(row)``: rows in flight
        or acknowledged. True if the view is complete now."""
        offered, self._loading = self._loading or [], None
        if rows is None:
            if not self.complete:
                self.clear()
            return self.complete
        known: dict[int, OutboxEntry] = {}
        for entry in (*rows, *offered):
            if not skip(entry):
                known[entry.seq] = entry
        fresh = sorted(known.values(), key=_seq)
        self.clear()
        if not self._fits(fresh):
            return False
        for entry in fresh:
            self._add(entry)
        self.complete = True
        return True

    def put_back(self, entries: Iterable[OutboxEntry]) -> None:
        """Rows whose request failed (with their new attempt counts), in ``seq`` order again."""
        if not self.complete:
            return  # the store has them (rescheduled)
        back = list(entries)
        if not self._fits(back):
            self.clear()
            return
        touched: set[str] = set()
        for entry in back:
            self._add(entry)
            touched.add(entry.node)
        for node in touched:
            rows = self._nodes[node]
            self._nodes[node] = dict(sorted(rows.items()))

    def clear(self) -> None:
        """Forget every row: incomplete until the next load."""
        self._nodes.clear()
        self._receivers.clear()
        self._entries = self._bytes = 0
        self.complete = False

    def _fits(self, entries: Sequence[OutboxEntry]) -> bool:
        size = sum(len(e.body) for e in entries)
        return (
            self._entries + len(entries) <= self._max_entries
            and self._bytes + size <= self._max_bytes
        )

    def _add(self, entry: OutboxEntry) -> None:
        rows = self._nodes.get(entry.node)
        if rows is None:
            rows = self._nodes[entry.node] = {}
        if entry.seq in rows:
            return
        rows[entry.seq] = entry
        counts = self._receivers.get(entry.receiver)
        if counts is None:
            counts = self._receivers[entry.receiver] = Counter()
        counts[entry.node] += 1
        self._entries += 1
        self._bytes += len(entry.body)

    def holds(self, receiver: str) -> bool:
        """Whether a row for ``receiver`` waits here."""
        return receiver in self._receivers

    # -- taking --------------------------------------------------------------------------------

    def due(
        self, now: float, ready: Callable[[str], bool], busy: Callable[[str], bool], limit: int
    ) -> list[OutboxEntry]:
        """Up to ``limit`` rows of each node that is ``ready``, in ``seq`` order over all of
        them; a receiver stops at a row not due yet, one with an earlier row elsewhere, or
        one that is ``busy`` (in flight)."""
        picked: list[list[OutboxEntry]] = []
        for node, rows in self._nodes.items():
            if not rows or not ready(node):
                continue
            taken: list[OutboxEntry] = []
            stopped: set[str] = set()
            for entry in rows.values():
                receiver = entry.receiver
                if receiver in stopped:
                    continue
                if (
                    entry.next_attempt_at > now
                    or busy(receiver)
                    or (len(self._receivers[receiver]) > 1 and self._earlier_elsewhere(entry))
                ):
                    stopped.add(receiver)
                    continue
                taken.append(entry)
                if len(taken) >= limit:
                    break
            if taken:
                picked.append(taken)
        if len(picked) == 1:
            return picked[0]
        return list(merge(*picked, key=_seq))

    def _earlier_elsewhere(self, entry: OutboxEntry) -> bool:
        for node, count in self._receivers[entry.receiver].items():
            if node != entry.node and count:
                for other in self._nodes[node].values():
                    if other.receiver == entry.receiver and other.seq < entry.seq:
                        return True
        return False

    def take(self, entries: Iterable[OutboxEntry]) -> None:
        """These rows are in flight now: out of the view."""
        for entry in entries:
            rows = self._nodes.get(entry.node)
            if rows is None or rows.pop(entry.seq, None) is None:
                continue
            if not rows:
                del self._nodes[entry.node]
            counts = self._receivers[entry.receiver]
            counts[entry.node] -= 1
            if counts[entry.node] <= 0:
                del counts[entry.node]
                if not counts:
                    del self._receivers[entry.receiver]
            self._entries -= 1
            self._bytes -= len(entry.body)
