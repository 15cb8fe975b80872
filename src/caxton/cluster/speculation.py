"""`Speculation`: agents' messages for other nodes, sent before their outbox row commits.

An agent's send to an agent on another node is written to the outbox by the journal's next
flush, and the row reaches the forwarder once committed (`Forwarder.offer`). Under load that
commit takes a few milliseconds (group commit), on both sides of every crossing. So the
worker also records the message here (`incoming`, a deque its thread appends to) and the
forwarder may send it at once, with a temporary negative ``seq``, before the row exists.

Nothing is given up by that:

* The row is still written, with the message's history and its sender's handled mark. When it
  is offered, what happened to the early copy decides (`committed`): acknowledged, the row is
  deleted without being sent; failed, the row is sent again (not ``fresh``: the owner may have
  it already); still in flight, the row is held until the request ends.
* A crash before the row commits loses the early copy's record, but also the handled mark of
  the message whose handler sent it: that message is delivered again after the restart and its
  handler sends again (at least once, as the journal always was; docs/cluster.md, "Messages
  across nodes").
* Per sender-receiver order: a receiver's messages are sent early only while none of its
  messages waits in the view or is known to need the view (a copy that failed or was not
  sent early, or a message written on the loop: an API submit, a timer, a `failure` reply,
  announced with `expect` before its write): from the first such message on, its messages go
  through the view, in ``seq`` order, until those rows arrived (`blocked`). A receiver in
  flight keeps its early messages queued (the policy starts one request per receiver at a
  time).

Keys are (message_id, receiver), one per delivery. A key whose row has not arrived
`FORGET_AFTER` seconds after it was settled (its write failed) is forgotten by `expire`.

Loop thread only, except `incoming.append`.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from caxton.storage.outbox import OutboxEntry
from caxton.wire.header import message_id_of

__all__ = ["FORGET_AFTER", "MAX_QUEUED", "Speculation"]

#: Early messages queued for one node at most (beyond, they wait for their rows).
MAX_QUEUED = 4096
#: Seconds after its settling after which a key whose row never arrived is forgotten (a
#: journal write takes milliseconds; its row arriving later still would be sent as a first
#: send, and could be delivered twice).
FORGET_AFTER = 300.0

Key = tuple[str, str]


class State(enum.Enum):
    QUEUED = "queued"  # not sent yet
    FLIGHT = "flight"  # in a request
    ACKED = "acked"  # the owner committed it: the row is deleted when it arrives
    FAILED = "failed"  # its request failed: the row is sent again, not fresh
    DROPPED = "dropped"  # not sent early after all: the row is sent as usual


@dataclass(slots=True)
class _Track:
    state: State
    entry: OutboxEntry
    at: float


@dataclass(slots=True)
class Settled:
    """What the forwarder does with committed rows (`committed`) or after a request ends
    (`finished`)."""

    #: Rows for the view (in the order given).
    send: list[OutboxEntry]
    #: ``seq`` of rows to delete: the owner has them.
    delete: list[int]


def _age(entry: OutboxEntry) -> int:
    return -entry.seq  # early seqs count down from -1


class Speculation:
    """Early sends and their keys (module docstring)."""

    def __init__(self, *, max_queued: int = MAX_QUEUED, forget_after: float = FORGET_AFTER):
        #: (body, receiver, node), appended by worker threads (`Journal.sent_remote`).
        self.incoming: deque[tuple[bytes, str, str]] = deque()
        self._max_queued = max_queued
        self._forget_after = forget_after
        self._queued: dict[str, dict[int, OutboxEntry]] = {}
        self._tracks: dict[Key, _Track] = {}
        #: Rows committed while their early copy is in flight.
        self._held: dict[Key, OutboxEntry] = {}
        #: receiver -> keys whose rows must go through the view before it is sent early again.
        self._blocked: Counter[str] = Counter()
        self._next = 0
        self.sent = self.acked = self.failed = self.dropped = 0

    def __len__(self) -> int:
        """Early messages queued (not sent yet)."""
        return sum(map(len, self._queued.values()))

    @property
    def tracking(self) -> bool:
        """Whether any key is tracked (queued, in flight, or waiting for its row)."""
        return bool(self._tracks)

    def tracked(self, entry: OutboxEntry) -> bool:
        """Whether a row read from the store is already being taken care of here (its early
        copy is in flight or acknowledged)."""
        track = self._tracks.get((entry.message_id, entry.receiver))
        return track is not None and track.state in (State.FLIGHT, State.ACKED)

    # -- in: what workers recorded -------------------------------------------------------------

    def take_incoming(self, now: float) -> int:
        """Queue what the workers recorded (loop thread); how many were taken."""
        incoming = self.incoming
        count = len(incoming)
        tracks, queued = self._tracks, self._queued
        for _ in range(count):
            body, receiver, node = incoming.popleft()
            mid = message_id_of(body)
            if mid is None or (mid, receiver) in tracks:
                continue  # no id: its row says why; a repeat: the receiver drops it anyway
            self._next -= 1
            entry = OutboxEntry(self._next, mid, node, receiver, body, now, 0, 0.0, True)
            queue = queued.get(node)
            if queue is None:
                queue = queued[node] = {}
            track = tracks[(mid, receiver)] = _Track(State.QUEUED, entry, now)
            if len(queue) >= self._max_queued:
                self._drop(track, now)
                continue
            queue[entry.seq] = entry
        return count

    def _drop(self, track: _Track, now: float) -> None:
        track.state = State.DROPPED
        track.at = now
        self._blocked[track.entry.receiver] += 1
        self.dropped += 1

    def expect(self, rows: Sequence[tuple[str, str, str, bytes]], now: float) -> None:
        """These outbox rows (message_id, node, receiver, body) are being written on the loop
        (not by the journal): their receivers get nothing early until the rows arrive."""
        tracks = self._tracks
        for mid, node, receiver, _ in rows:
            key = (mid, receiver)
            if key not in tracks:
                entry = OutboxEntry(0, mid, node, receiver, b"", now, 0, 0.0, False)
                tracks[key] = _Track(State.DROPPED, entry, now)
                self._blocked[receiver] += 1

    def _unblock(self, receiver: str) -> None:
        left = self._blocked[receiver] - 1
        if left > 0:
            self._blocked[receiver] = left
        else:
            del self._blocked[receiver]

    # -- out: what a round may send ------------------------------------------------------------

    def candidates(
        self, waiting: Callable[[str], bool], backing_off: Callable[[str], bool], now: float
    ) -> list[OutboxEntry]:
        """The queued messages a round may send now, oldest first per node. A message whose
        receiver is ``waiting`` (rows in the view) or blocked, or whose node is backing off,
        is dropped (it goes through the view) and blocks its receiver."""
        picked: list[OutboxEntry] = []
        tracks, blocked = self._tracks, self._blocked
        for node, queue in self._queued.items():
            if not queue:
                continue
            off = backing_off(node)
            for seq, entry in list(queue.items()):
                receiver = entry.receiver
                if off or receiver in blocked or waiting(receiver):
                    del queue[seq]
                    self._drop(tracks[(entry.message_id, receiver)], now)
                else:
                    picked.append(entry)
        picked.sort(key=_age)  # oldest first over all nodes (a receiver that moved)
        return picked

    def drop_all(self, now: float) -> None:
        """Send nothing early now (the view is incomplete: rounds read the store)."""
        for queue in self._queued.values():
            for entry in queue.values():
                self._drop(self._tracks[(entry.message_id, entry.receiver)], now)
            queue.clear()

    def started(self, entries: Iterable[OutboxEntry]) -> None:
        """These early messages are in a request now."""
        for entry in entries:
            queue = self._queued.get(entry.node)
            if queue is not None:
                queue.pop(entry.seq, None)
            self._tracks[(entry.message_id, entry.receiver)].state = State.FLIGHT
            self.sent += 1

    def finished(self, entries: Sequence[OutboxEntry], acked: Iterable[int], now: float) -> Settled:
        """A request with these early messages ended (or their commit notice came);
        ``acked``: the ``seq`` acknowledged."""
        done = set(acked)
        settled = Settled([], [])
        tracks, held = self._tracks, self._held
        for entry in entries:
            key = (entry.message_id, entry.receiver)
            row = held.pop(key, None)
            ok = entry.seq in done
            if ok:
                self.acked += 1
            else:
                self.failed += 1
            if row is not None:  # the row is here already: settle it now
                del tracks[key]
                if ok:
                    settled.delete.append(row.seq)
                else:
                    settled.send.append(replace(row, fresh=False))
                continue
            track = tracks[key]
            track.at = now
            if ok:
                track.state = State.ACKED
            else:
                track.state = State.FAILED
                self._blocked[entry.receiver] += 1
        return settled

    # -- rows committed ------------------------------------------------------------------------

    def committed(self, rows: Sequence[OutboxEntry], now: float) -> Settled:
        """Committed outbox rows (in commit order): which go to the view, which are deleted;
        rows whose early copy is in flight are held until `finished`. ``now``: the clock
        for what the workers recorded meanwhile (taken first: a row's message was recorded
        before its row was written)."""
        if self.incoming:
            self.take_incoming(now)
        tracks = self._tracks
        if not tracks:
            return Settled(list(rows), [])
        settled = Settled([], [])
        for row in rows:
            key = (row.message_id, row.receiver)
            track = tracks.get(key)
            if track is None:
                settled.send.append(row)
                continue
            state = track.state
            if state is State.FLIGHT:
                self._held[key] = row
                continue
            del tracks[key]
            if state is State.ACKED:
                settled.delete.append(row.seq)
            elif state is State.QUEUED:
                early = track.entry
                queue = self._queued.get(early.node)
                if queue is not None:
                    queue.pop(early.seq, None)
                settled.send.append(row)
            elif state is State.FAILED:
                self._unblock(row.receiver)
                settled.send.append(replace(row, fresh=False))
            else:  # DROPPED: never sent
                self._unblock(row.receiver)
                settled.send.append(row)
        return settled

    def expire(self, now: float) -> int:
        """Forget settled keys whose rows never arrived (their write failed); how many."""
        limit = now - self._forget_after
        old = [
            key
            for key, track in self._tracks.items()
            if track.at < limit and track.state in (State.ACKED, State.FAILED, State.DROPPED)
        ]
        for key in old:
            track = self._tracks.pop(key)
            if track.state is not State.ACKED:
                self._unblock(track.entry.receiver)
        return len(old)
