"""Worker threads and run queues: how ready agents reach a thread without a hop per message.

A message never travels between threads by itself. Agents that have work ("ready") are put on a
run queue, and a worker drains an agent's mailbox in a batch. Two kinds of run queue:

* each worker's **local** queue: an agent woken *by* a worker (a local `send` from the agent it
  is running) goes there, so the worker continues with the receiver itself as soon as the
  sender's handler returns. A ping-pong pair therefore runs on one thread with no handoffs;
  after `LOCAL_STREAK` such runs in a row, or `SLICE_TICKS` epoch ticks (~50 ms) of them, the
  worker serves the shared queue once, so a conversation that never pauses (or an agent that
  keeps sending to itself) cannot starve other agents.
* one **shared** queue (a deque under a condition variable): agents woken from outside a worker
  (the event loop's `deliver`) and the overflow of busy local queues (more than `LOCAL_LIMIT`
  agents, or any backlog while other workers sit idle).
* one **urgent** queue for control operations (deploy, stop, hibernate, upgrade): taken before
  anything else, so a maintenance pass or an operator's command never waits behind a backlog of
  messages (memory-pressure hibernation must outpace the restores that messages cause).

The thread hop (a condition-variable wake, ~35-140 µs) is thus paid per batch of work that
enters from outside, not per message.

**Time slices.** A batch ends early once it has taken `SLICE_TICKS` epoch ticks (~50 ms), and
the agent goes to the back of the shared queue: an agent whose messages each take tens of
milliseconds without ever reaching the deadline would otherwise keep its worker for 64 of them
and be requeued on it ahead of everyone waiting on the shared queue. (64 runs of 64 messages
of an agent sending to itself took ~1 s before an echo probe waiting on the shared queue ran.)

**Slow agents** (whose last message ran into ``execution_timeout``, `Agent.slow`) must not
occupy every worker: a loop in one agent's handler would otherwise starve all the others. A
slow agent runs one message per turn, always requeued on the shared queue, and at most
`slow_limit` of them (all workers but one) run at the same time; the others wait in ``_parked``
until a slot frees up (a control operation for one of them is moved to the urgent queue). A
slow agent whose message finishes in time is an ordinary agent again.
"""

from __future__ import annotations

import threading
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING

from caxton.runtime.sandbox import host
from caxton.runtime.scheduling.executor import LOCAL_LIMIT, SLICE_TICKS, Worker

if TYPE_CHECKING:
    from caxton.runtime.agent import Agent

__all__ = ["Scheduler", "current_worker"]
#: Agents a worker runs from its local queue in a row before it serves the shared queue once:
#: a ping-pong pair keeps its worker's local queue busy forever, and must not starve the rest.
LOCAL_STREAK = 64
#: Longest time a worker holds loop-bound events before posting them (seconds).
FLUSH_INTERVAL = 0.002

_tls = threading.local()


def current_worker() -> Worker | None:
    """The worker running on this thread, or None off the worker pool."""
    worker: Worker | None = getattr(_tls, "worker", None)
    return worker


class Scheduler:
    """A fixed pool of worker threads draining ready agents."""

    def __init__(self, workers: list[Worker], *, stack_size: int = 0) -> None:
        self.workers = workers
        for worker in workers:
            worker.scheduler = self
        self._shared: deque[Agent] = deque()
        self._urgent: deque[Agent] = deque()
        self._parked: deque[Agent] = deque()  # slow agents waiting for a slot
        self._slow_running = 0
        #: Slow agents that may run at the same time: all workers but one (at least one).
        self.slow_limit = max(1, len(workers) - 1)
        self._cond = threading.Condition(threading.Lock())
        #: Workers waiting for work (a plain attribute, read on the hot path without a call;
        #: written only under ``_cond``, read racily as a hint: see `Worker.wake_local`).
        self.idle = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._stack_size = stack_size

    def start(self) -> None:
        """Start one thread per worker."""
        previous = threading.stack_size()
        if self._stack_size:
            threading.stack_size(self._stack_size)
        try:
            for worker in self.workers:
                thread = threading.Thread(
                    target=self._loop,
                    args=(worker,),
                    name=f"caxton-wasm-{worker.index}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        finally:
            if self._stack_size:
                threading.stack_size(previous)

    def wake(self, agent: Agent) -> None:
        """Put a ready agent on a run queue (the caller set ``agent.scheduled``)."""
        worker: Worker | None = getattr(_tls, "worker", None)
        if worker is not None:
            local = worker.local
            if not local or (len(local) < LOCAL_LIMIT and not self.idle):
                local.append(agent)
                return
        with self._cond:
            self._shared.append(agent)
            self._cond.notify()

    def wake_urgent(self, agent: Agent) -> None:
        """Put an agent with a control operation ahead of every other ready agent."""
        with self._cond:
            self._urgent.append(agent)
            self._cond.notify()

    def wake_shared(self, agent: Agent) -> None:
        """Put a ready agent on the shared run queue and wake a worker."""
        with self._cond:
            self._shared.append(agent)
            self._cond.notify()

    def nudge(self, agent: Agent) -> None:
        """A control operation was queued for a scheduled agent: if it is parked, run it next."""
        with self._cond:
            if agent in self._parked:
                self._parked.remove(agent)
                self._urgent.append(agent)
                self._cond.notify()

    def _run_slow(self, worker: Worker, agent: Agent) -> None:
        """Run a slow agent's control operations and one message, within the slow slots."""
        if agent.control:  # control operations never wait for a slot
            if not worker.run(agent, 0):
                return  # nothing left to do
            if not agent.slow:  # restarted meanwhile
                self.wake(agent)
                return
        with self._cond:
            if self._slow_running >= self.slow_limit:
                self._parked.append(agent)
                return
            self._slow_running += 1
        agent.slow = False  # set again if this message also runs into the deadline
        try:
            again = worker.run(agent, 1)
        finally:
            with self._cond:
                self._slow_running -= 1
                if self._parked:
                    self._shared.append(self._parked.popleft())
                    self._cond.notify()
        if again:
            self.wake_shared(agent)

    def queued(self) -> int:
        """Agents waiting on the shared and urgent queues."""
        return len(self._shared) + len(self._urgent)

    def _loop(self, worker: Worker) -> None:
        _tls.worker = worker
        host.bind(worker.cx)
        worker.bind()
        local, shared, urgent, cond = worker.local, self._shared, self._urgent, self._cond
        last_flush = perf_counter()
        engine = worker.svc.engine
        streak = 0  # agents run from `local` in a row
        streak_from = engine.ticks  # when the shared queue was last served
        while not self._stopping:
            # `urgent` and `shared` are read without the lock here: hints, checked below.
            if (
                local
                and not urgent
                and (
                    not shared
                    or (streak < LOCAL_STREAK and engine.ticks - streak_from < SLICE_TICKS)
                )
            ):
                agent = local.popleft()
                streak += 1
            else:
                streak = 0
                streak_from = engine.ticks
                if not local:
                    worker.flush()  # about to wait: post what this worker collected
                with cond:
                    # Only this thread appends to `local`, so it cannot fill up meanwhile.
                    while not urgent and not shared and not local:
                        if self._stopping:
                            return
                        self.idle += 1
                        cond.wait()
                        self.idle -= 1
                    if urgent:
                        agent = urgent.popleft()
                    elif shared:  # after a streak, shared work gets its turn
                        agent = shared.popleft()
                    else:
                        agent = local.popleft()
            if agent.slow:
                self._run_slow(worker, agent)
            elif worker.run(agent):
                if worker.sliced:  # it used its time slice: behind the others waiting
                    worker.sliced = False
                    self.wake_shared(agent)
                else:
                    self.wake(agent)
            if worker.pending:
                now = perf_counter()
                if now - last_flush > FLUSH_INTERVAL:
                    worker.flush()
                    last_flush = now
        worker.flush()

    def stop(self, timeout: float) -> bool:
        """Ask workers to stop after their current message; True if all exited in time."""
        with self._cond:
            self._stopping = True
            for worker in self.workers:
                worker.stopping = True
            self._cond.notify_all()
        deadline = perf_counter() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - perf_counter()))
        return not any(t.is_alive() for t in self._threads)
