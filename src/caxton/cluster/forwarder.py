"""`Forwarder`: the task that sends the outbox to the owning nodes, by `RetryPolicy`.

One round (`pump`) takes the due entries, asks the policy which to send, and
starts one request task per target node (a node may have several in flight, up to the
policy's ``max_in_flight``, never two carrying the same receiver); each task awaits the
injected ``send(node, entries)`` (which returns the acknowledged ``seq`` values, or raises),
writes the outcome back (acknowledged entries deleted, the others rescheduled with their attempt
counts) and only then frees its node and receivers, so no entry is sent twice by one node
unless its request failed. A slow or unreachable node holds only its own task.

With ``acks_behind`` the acknowledged entries are deleted by one background write at a time
(the acknowledgements of several requests coalesce into it) instead of each request awaiting
its own: the request frees its receivers at once, and until the delete commits `pump` drops
those entries from what it reads (so they are not sent again). A crash before the delete
commits only sends them again, and the receiver drops them as duplicates.

Where the due entries come from: committed rows are `offer`-ed with their ``seq`` and kept in
an `OutboxView`; while it is complete a round plans from memory (no store read). It is loaded
from the store at the start, after it overflowed (then rounds read the store's `due`, as
they would without it) and every `RELOAD_INTERVAL` as a safety net.

`run` repeats rounds when woken (`wake`, `offer`) or when a node's backoff ends, and at
least every `POLL_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from time import time_ns

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import spans
from caxton.cluster.outbox import Outcome, RetryPolicy
from caxton.cluster.outbox_view import OutboxView
from caxton.cluster.speculation import Speculation
from caxton.runtime.tracing import SpanLog
from caxton.storage.outbox import OutboxEntry, OutboxRepository
from caxton.tasks import TaskSet

__all__ = ["POLL_INTERVAL", "ForwardStatistics", "Forwarder", "Send"]

log = logging.getLogger(__name__)
#: ``send(node, entries)``: one request to ``node``; the acknowledged entries' ``seq`` values.
Send = Callable[[str, Sequence[OutboxEntry]], Awaitable[Collection[int]]]

#: `Forwarder.run` looks at the store at least this often (seconds), woken or not.
POLL_INTERVAL = 1.0
#: The most entries one round reads from the store.
ROUND_LIMIT = 4096
#: Seconds between two loads of the view from the store when it is complete (a safety net)
#: and between two attempts when it is not (the outbox was too large to hold).
RELOAD_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class ForwardStatistics:
    """Counters since start (for the metrics: forwards sent, acknowledged, retried)."""

    requests: int
    failed_requests: int
    sent: int
    acked: int
    retried: int
    #: Agents' messages sent before their outbox row committed (`Speculation`), and of
    #: those, how many the owner acknowledged.
    early: int = 0
    early_acked: int = 0


class Forwarder:
    """Sends ``storage.outbox`` to other nodes with ``send`` (module docstring)."""

    def __init__(
        self,
        outbox: OutboxRepository,
        send: Send,
        *,
        policy: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        acks_behind: bool = False,
        speculation: Speculation | None = None,
    ) -> None:
        self._outbox = outbox
        self._acks_behind = acks_behind
        #: Acknowledged, their delete not committed (or committed after the last read began).
        self._acknowledged: set[int] = set()
        self._to_delete: list[int] = []
        self._deleted: list[int] = []
        self._deleting: asyncio.Task[None] | None = None
        self._send = send
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._requests: dict[asyncio.Task[None], str] = {}
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks = TaskSet("outbox forwarder", log=log)
        self._requests_total = self._failed = self._sent = self._acked = self._retried = 0
        self.view = OutboxView()
        #: Agents' messages sent before their rows commit (fed by the journal; see `offer`).
        self.speculation = Speculation() if speculation is None else speculation
        self._in_flight: set[int] = set()
        self._next_load = 0.0
        #: Rounds planned from memory and from a store read (for the statistics and tests).
        self.memory_rounds = self.store_rounds = 0
        #: With tracing on: where forwards of traced messages are recorded (`cluster.spans`).
        self.spans: SpanLog | None = None

    def statistics(self) -> ForwardStatistics:
        spec = self.speculation
        return ForwardStatistics(
            self._requests_total,
            self._failed,
            self._sent,
            self._acked,
            self._retried,
            spec.sent,
            spec.acked,
        )

    @property
    def in_flight(self) -> dict[str, asyncio.Task[None]]:
        """A request task of each node with a request in flight (the latest started)."""
        return {node: task for task, node in self._requests.items()}

    @property
    def requests_in_flight(self) -> list[tuple[str, asyncio.Task[None]]]:
        """Every request in flight: (node, task), oldest first."""
        return [(node, task) for task, node in self._requests.items()]

    def wake(self) -> None:
        """Run a round soon (rows are handed over with `offer`, which wakes it too)."""
        self._wakeup.set()

    def offer(self, entries: Sequence[OutboxEntry]) -> None:
        """These rows were committed (loop thread): hold them and run a round soon (rows
        whose message was sent early are settled by what became of it: `Speculation`)."""
        settled = self.speculation.committed(entries, self._clock.wall())
        if settled.delete:
            self._delete_behind(settled.delete)
        self.view.offer([e for e in settled.send if not self._skip(e)])
        self._wakeup.set()

    def _skip(self, entry: OutboxEntry) -> bool:
        seq = entry.seq
        return (
            seq in self._in_flight or seq in self._acknowledged or self.speculation.tracked(entry)
        )

    async def pump(self) -> int:
        """One round: start the requests the policy allows now; return how many started."""
        now = self._clock.wall()
        acknowledged = self._acknowledged
        if self._deleted:  # committed before this read starts: it cannot see them any more
            acknowledged.difference_update(self._deleted)
            self._deleted = []
        view, policy, spec = self.view, self.policy, self.speculation
        if spec.incoming:
            spec.take_incoming(now)
        if now >= self._next_load:
            await self._load(now)
        if view.complete:
            self.memory_rounds += 1
            due = view.due(
                now, lambda node: policy.ready(node, now), policy.busy, policy.max_request
            )
            if spec:  # sent early: after every committed row (they are younger)
                early = spec.candidates(view.holds, lambda node: policy.backing_off(node, now), now)
                due = [*due, *early] if due else early
        else:
            spec.drop_all(now)
            self.store_rounds += 1
            due = await self._outbox.due(now, ROUND_LIMIT)
            if acknowledged or spec.tracking:
                due = [
                    entry
                    for entry in due
                    if entry.seq not in acknowledged and not spec.tracked(entry)
                ]
        plan = policy.plan(due, now)
        for node, entries in plan.items():
            if entries[-1].seq < 0:
                spec.started(entry for entry in entries if entry.seq < 0)
            view.take(entries)
            self._in_flight.update(entry.seq for entry in entries)
            task = self._tasks.start(self._request(node, entries), f"forward to {node}")
            self._requests[task] = node
        return len(plan)

    async def _load(self, now: float) -> None:
        """Read the outbox into the view (when it fits): every row not in flight."""
        self._next_load = now + RELOAD_INTERVAL
        self.speculation.expire(now)
        view = self.view
        view.begin_load()
        rows: list[OutboxEntry] | None = None
        try:
            # a long partition's backlog is counted, not read, until it fits again
            if view.complete or await self._outbox.depth() <= view.max_entries:
                rows = await self._outbox.entries(limit=view.max_entries + 1)
        except Exception:  # the store is failing: the rounds read it (and fail) meanwhile
            log.exception("reading the outbox failed")
        if rows is not None and len(rows) > view.max_entries:
            rows = None
        view.end_load(rows, self._skip)

    async def _request(self, node: str, entries: list[OutboxEntry]) -> None:
        self._requests_total += 1
        self._sent += len(entries)
        started = time_ns()
        try:
            try:
                acked: Collection[int] = set(await self._send(node, entries))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the transport's failure: retry after the backoff
                log.debug("forward to %s failed: %s", node, exc)
                self._failed += 1
                acked = ()
            outcome = self.policy.outcome(node, entries, acked, self._clock.wall())
            if entries[-1].seq < 0:  # some were sent early: settle them, keep the rest
                outcome = self._settle_early(entries, acked, outcome)
            if self.spans is not None:
                spans.forwarded(self.spans, node, entries, acked, started)
            if outcome.retry and outcome.next_at is not None:
                tries = dict(outcome.retry)
                back = [e for e in entries if e.seq in tries]
                # out of flight before the awaits below: a load meanwhile must keep them
                self._in_flight.difference_update(e.seq for e in back)
                self.view.put_back(
                    [
                        replace(
                            e, attempts=tries[e.seq], next_attempt_at=outcome.next_at, fresh=False
                        )
                        for e in back
                    ]
                )
            if outcome.acked and self._acks_behind:
                self._delete_behind(outcome.acked)
            elif outcome.acked:
                self._acked += await self._outbox.ack(outcome.acked)
            if outcome.retry and outcome.next_at is not None:
                self._retried += len(outcome.retry)
                by_attempts: dict[int, list[int]] = {}
                for seq, attempts in outcome.retry:
                    by_attempts.setdefault(attempts, []).append(seq)
                for attempts, seqs in by_attempts.items():
                    await self._outbox.reschedule(seqs, outcome.next_at, attempts)
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed: the entries stay and are sent again
            log.exception("writing back a forward to %s failed", node)
        finally:
            self._in_flight.difference_update(entry.seq for entry in entries)
            self.policy.release(node, entries)
            current = asyncio.current_task()
            if current is not None:
                self._requests.pop(current, None)
            self._wakeup.set()

    def _settle_early(
        self, entries: Sequence[OutboxEntry], acked: Collection[int], outcome: Outcome
    ) -> Outcome:
        """What became of a request's early messages (rows committed meanwhile are deleted
        or sent again); the outcome of its committed rows only."""
        now = self._clock.wall()
        settled = self.speculation.finished([e for e in entries if e.seq < 0], acked, now)
        if settled.delete:
            self._delete_behind(settled.delete)
        if settled.send:
            self.view.put_back(settled.send)
        return replace(
            outcome,
            acked=tuple(seq for seq in outcome.acked if seq > 0),
            retry=tuple(item for item in outcome.retry if item[0] > 0),
        )

    def _delete_behind(self, seqs: Sequence[int]) -> None:
        self._acknowledged.update(seqs)
        self._to_delete.extend(seqs)
        if self._deleting is None:
            self._deleting = self._tasks.start(self._delete(), "outbox acknowledgements")

    async def _delete(self) -> None:
        try:
            while self._to_delete:
                seqs, self._to_delete = self._to_delete, []
                try:
                    self._acked += await self._outbox.ack(seqs)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store failed: not sent again until the next start
                    log.exception("deleting acknowledged outbox entries failed")
                    continue
                self._deleted.extend(seqs)
        finally:
            self._deleting = None

    async def settled(self) -> None:
        """Wait until every acknowledgement so far is deleted from the store."""
        while self._deleting is not None:
            await asyncio.shield(self._deleting)

    async def run(self) -> None:
        """Rounds until cancelled (see the module docstring); `start` runs this as a task."""
        while True:
            self._wakeup.clear()
            try:
                await self.pump()
            except Exception:  # the store is failing: try again at the next poll
                log.exception("reading the outbox failed")
            now = self._clock.wall()
            wakeup = self.policy.next_wakeup(now)
            timeout = POLL_INTERVAL if wakeup is None else min(POLL_INTERVAL, wakeup - now)
            # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives
            # as the event is set (a wake-up at shutdown), and the loop would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wakeup.wait()

    def start(self) -> None:
        """Run `run` as a task owned by this forwarder (stopped by `aclose`)."""
        if self._runner is None:
            self._runner = self._tasks.service(self.run(), "outbox forwarder")

    async def aclose(self) -> None:
        """Stop the rounds and the requests in flight; what was not acknowledged stays."""
        self._runner = None
        if self._deleting is not None:
            with contextlib.suppress(Exception):  # what is not deleted is sent again, dropped
                await self.settled()
        await self._tasks.aclose()
