"""`SpanExportProcess`: the spans of traced messages, built and exported in a child process.

Building an OpenTelemetry span and encoding it for OTLP costs tens of microseconds of Python
per span, several times what handling the message costs; in the node's process that work
would hold the interpreter lock the workers need (measured: ping/pong at a sample rate of 0.1
ran at about half the speed of tracing off). So a node hands the records of its `SpanLog`
(`caxton.runtime.tracing`) to a child process, which builds the spans (`SpanBuilder`, as OTLP
bytes) and exports them in batches (`SpanBatches`) through the exporter of its own
`configure_tracing` stack (same endpoint, protocol, timeout and queue bound); the node's own
spans (one per API request, ``caxton.accept``) stay in the node.

Protocol over one pipe: the node sends msgpack lists of records every `INTERVAL` seconds (a
`SpanLog` bounds what waits meanwhile; a record the C trace context made is msgpack already);
the child answers, after each batch and at most once a second, with the counts of its spans
exported, failed and dropped since its last answer, which the node adds to its own
(``caxton_trace_spans_*`` on ``/metrics`` cover both). The child stops when the pipe closes
(the node stopped, or died): it exports what it holds within ``otlp_timeout`` and exits.
`close` waits at most a bounded time for it, then kills it.

The child runs `NICENESS` steps below the node's CPU priority: building and exporting spans
yields to handling messages when the two compete for a core. On a busy machine the spans wait
(in the pipe, the child's queue, at most the `SpanLog`'s bound in the node; drops are counted)
and go out when the node leaves a core idle, instead of slowing every agent meanwhile
(measured with ``bench/bench_tracing.py`` on two cores: at a sample rate of 0.1 the
conversations that were not sampled ran 11 % slower than with tracing off while the child
exported the sampled ones, and 4 % slower with the child at this niceness).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import msgspec

from caxton.config import ObservabilityConfig
from caxton.runtime.tracing import SpanLog

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from caxton.observability._span_batches import SpanBatches
    from caxton.observability._span_export import SpanCounts
    from caxton.observability.spans import SpanBuilder
    from caxton.observability.tracing import Tracing

__all__ = ["INTERVAL", "NICENESS", "SpanExportProcess"]

#: Seconds between two batches sent to the child.
INTERVAL = 0.2
#: Seconds between two count reports of the child.
REPORT_INTERVAL = 1.0
_FLUSH = b"F"  # not a msgpack list: asks the child to export what it holds and answer
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[tuple[Any, ...]]).decode


def _array_head(items: int) -> bytes:
    """The head of a msgpack array of ``items`` items."""
    if items < 16:
        return bytes((0x90 | items,))
    if items < 1 << 16:
        return b"\xdc" + items.to_bytes(2, "big")
    return b"\xdd" + items.to_bytes(4, "big")


#: Records the child builds at a time (their spans go to the export queue together).
_CHUNK = 128
#: How much lower the child's CPU priority is than the node's (added to its nice value).
NICENESS = 10


_log = logging.getLogger("caxton.observability.spans")


class SpanExportProcess:
    """Ships a `SpanLog` to a span-building child process (see the module)."""

    def __init__(
        self,
        log: SpanLog,
        config: ObservabilityConfig,
        *,
        node_id: str | None = None,
        counts: SpanCounts | None = None,
    ) -> None:
        self.log = log
        self._config = config
        self._node_id = node_id
        self._counts = counts
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._shipping = threading.Lock()  # one sender on the pipe at a time
        self._lost = 0  # `SpanLog.dropped` already added to the counts
        #: Batches and records sent to the child.
        self.batches = self.records = 0

    @property
    def pid(self) -> int | None:
        """The child's process id (None before `start`)."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child and the thread that feeds it."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=_child_main,
            args=(self._config, self._node_id, child),
            name="caxton-span-export",
            daemon=True,
        )
        process.start()
        child.close()
        self._conn, self._process = parent, process
        self._thread = threading.Thread(target=self._run, name="caxton-spans", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            if not self.ship():
                return

    def ship(self) -> bool:
        """Send what waits now; take the child's reports. False once the child is gone."""
        with self._shipping:
            return self._ship()

    def flush(self, timeout: float = 30.0) -> bool:
        """Send what waits and wait until the child has exported it (or ``timeout``); True
        if it did. For benchmarks and tests: a node never waits for its spans."""
        with self._shipping:
            conn = self._conn
            if conn is None or not self._ship():
                return False
            deadline = time.monotonic() + timeout
            try:
                conn.send_bytes(_FLUSH)
                while conn.poll(max(0.0, deadline - time.monotonic())):
                    report = conn.recv()
                    self._count(report)
                    if report.get("flushed"):
                        return True
            except (OSError, EOFError):
                pass
            return False

    def _ship(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        records = self.log.records
        take = records.popleft
        batch = [take() for _ in range(len(records))]  # (others only append meanwhile)
        try:
            if batch:
                # One msgpack array of the records (~6x cheaper than pickle per record); a
                # record the C trace context made is that array's item already.
                items = [r if isinstance(r, bytes) else _encode(r) for r in batch]
                conn.send_bytes(b"".join((_array_head(len(items)), *items)))
                self.batches += 1
                self.records += len(batch)
            while conn.poll():
                self._count(conn.recv())
        except (OSError, EOFError):
            _log.warning("tracing: the span export process is gone; message spans are dropped")
            return False
        self._count({"dropped": 0})
        return True

    def _count(self, report: dict[str, int]) -> None:
        counts = self._counts
        if counts is None:
            return
        for name in ("exported", "failed", "dropped"):
            spans = report.get(name, 0)
            if spans:
                counts.add(name, spans)
        lost = self.log.dropped - self._lost  # records the log itself could not keep
        if lost:
            self._lost += lost
            counts.add("dropped", lost)

    def close(self, timeout: float = 2.0) -> None:
        """Send the last records, let the child export them, stop it: all within ``timeout``.

        A child that has not exported and exited by then (its collector hangs, or the pipe is
        full) is killed, and what it held is dropped.
        """
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self._stop.set()
        thread, self._thread = self._thread, None
        process = self._process
        if thread is not None:
            thread.join(left())
        finisher = threading.Thread(
            target=self._finish, args=(deadline,), name="caxton-spans-stop", daemon=True
        )
        if thread is None or not thread.is_alive():
            finisher.start()
            finisher.join(left())
        if process is not None:
            process.join(left())
            if process.is_alive():  # the sends blocked on it fail now
                process.kill()
                process.join(1.0)
        for stuck in (thread, finisher):
            if stuck is not None and stuck.ident is not None:
                stuck.join(1.0)
        conn, self._conn = self._conn, None
        self._process = None
        if conn is not None:
            conn.close()

    def _finish(self, deadline: float) -> None:
        """Ship the rest, tell the child to end, take its last reports (until ``deadline``)."""
        conn = self._conn
        if conn is None or not self.ship():
            return
        with contextlib.suppress(OSError, EOFError):
            conn.send_bytes(b"")  # the end: export what you hold, report, exit
            while conn.poll(max(0.0, deadline - time.monotonic())):
                report = conn.recv()
                self._count(report)
                if report.get("final"):
                    return


def _child_main(config: ObservabilityConfig, node_id: str | None, conn: Connection) -> None:
    """The child: build and export what arrives until the pipe ends (see the module)."""
    # A Ctrl-C or a service manager's SIGTERM reaches the whole process group: the node drains
    # and closes the pipe, and that (or its death) is what ends the child, after its export.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(OSError):  # not allowed here: the spans go out all the same
        os.nice(NICENESS)
    from caxton.observability._span_batches import SpanBatches
    from caxton.observability._span_export import CountingExporter
    from caxton.observability.spans import SCOPE, SpanBuilder
    from caxton.observability.tracing import configure_tracing

    tracing = configure_tracing(config, node_id=node_id)
    provider, processor = tracing.provider, tracing.processor
    if provider is None or processor is None:  # nothing to export to: drain and ignore
        with contextlib.suppress(EOFError, OSError):
            while conn.recv_bytes():
                pass
        return
    counts = processor.counts
    batches = SpanBatches(
        CountingExporter(tracing.exporter, counts),
        counts,
        provider.resource,
        SCOPE,
        capacity=config.otlp_max_queue_size,
        timeout=config.otlp_timeout,
    )
    log = SpanLog(limit=1 << 62)
    builder = SpanBuilder(log, processor, provider.resource, encoded=batches.put)
    reported = {"exported": 0, "failed": 0, "dropped": 0}

    def report(final: bool = False, flushed: bool = False) -> None:
        now = {"exported": counts.exported, "failed": counts.failed, "dropped": counts.dropped}
        message: dict[str, int] = {name: now[name] - reported[name] for name in now}
        reported.update(now)
        if final:
            message["final"] = 1
        if flushed:
            message["flushed"] = 1
        conn.send(message)

    last = time.monotonic()
    try:
        while True:
            if conn.poll(REPORT_INTERVAL):
                data = conn.recv_bytes()
                if not data:
                    break
                if data == _FLUSH:
                    batches.flush()
                    tracing.force_flush()
                    report(flushed=True)
                    continue
                records = _decode(data)  # our own parent's
                for at in range(0, len(records), _CHUNK):  # a full queue waits (`SpanBatches`)
                    log.records.extend(records[at : at + _CHUNK])
                    builder.drain()
            if time.monotonic() - last >= REPORT_INTERVAL:
                last = time.monotonic()
                report()
    except (EOFError, OSError):  # the node died: export what is held, then go
        _finish(builder, batches, tracing)
        return
    _finish(builder, batches, tracing)
    with contextlib.suppress(OSError):
        report(final=True)


def _finish(builder: SpanBuilder, batches: SpanBatches, tracing: Tracing) -> None:
    """Build what is left and export it, all within ``otlp_timeout`` (one attempt each)."""
    deadline = time.monotonic() + tracing.timeout
    builder.drain()
    tracing.stop_retrying()
    batches.close(tracing.timeout)
    tracing.shutdown(max(0.0, deadline - time.monotonic()))
