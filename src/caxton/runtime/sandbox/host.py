"""The ``caxton`` host functions of ABI v1, defined from the ABI's one table `abi.HOST_IMPORTS`.

Each function is a plain Python function of the call's arguments (ints) returning its i32
result. `define_host_functions` registers it as a raw ``wasmtime_linker_define_func_unchecked``
callback: through the C extension's trampoline when it is built (`accel`), else through a
ctypes adapter (~1.4 µs per guest call instead of ~17 µs through wasmtime-py's own callbacks).
They are defined once per engine on the shared linker, so they do not know which agent is
calling: every worker thread binds its `CallContext` in a thread-local before it calls into
wasm, and a function reads it from there. (The WASI functions that count an agent's file
writes are defined the same way, in `wasi_quota`.)

Rules every host function follows:

* it never raises into wasm: any problem becomes the ABI's negative return code (a malformed
  pointer range is ``-1``), and an unexpected exception is mapped to ``-1`` and logged with its
  traceback at most once a minute per function (`_failed`: a guest that can provoke one must
  not flood the log);
* it reads guest memory through the instance's memoryview, re-reading the memory size only when
  a range goes past the cached size (the memory may have grown);
* it never re-enters wasm: `send` only stamps the envelope and enqueues the bytes: into a local
  agent's mailbox directly (``local``), or through ``route`` (the worker's hand-over to the
  `caxton.runtime.delivery.Delivery` port) for anyone else;
* `send` keeps the agent's send budgets (`CallContext.send`) and leaves no trace of a send it
  refuses: a full mailbox is refused before the message is journaled.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sized
from ctypes import c_void_p, cast
from time import monotonic
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import _ffi as ffi

from caxton.errors import InvalidMessage, StorageError
from caxton.runtime import abi
from caxton.runtime.delivery import LARGE_MESSAGE, Offer
from caxton.runtime.sandbox._ffi import HOST_CALLBACK, define_unchecked
from caxton.runtime.sandbox.logs import MAX_LINE
from caxton.wire.envelope import Incoming, Stamper

if TYPE_CHECKING:
    from caxton.runtime.agent import Agent
    from caxton.runtime.delivery import MessageJournal
    from caxton.runtime.sandbox.instance import Instance

__all__ = ["CallContext", "bind", "define_host_functions"]

_log = logging.getLogger("caxton.runtime.host")
_tls = threading.local()
_M = 0xFFFFFFFF
_OK = abi.OK
_BACKPRESSURE = abi.ERR_BACKPRESSURE
_WAKE, _CLOSED = Offer.WAKE, Offer.CLOSED

#: Largest kv key (bytes); larger keys get ERR_TOO_LARGE.
MAX_KV_KEY = 1024
#: Bytes of log text one message may produce before further lines are dropped and counted.
LOG_BUDGET = 64 * 1024


#: Seconds between two tracebacks of unexpected failures of one host function (`_failed`).
FAILURE_LOG_INTERVAL = 60.0
_failure_logged: dict[str, float] = {}
_failures_unlogged: dict[str, int] = {}


def _failed(what: str) -> None:
    """Log the exception being handled in host function ``what``, at most once per
    `FAILURE_LOG_INTERVAL`; the failures in between are counted in the next line."""
    now = monotonic()
    last = _failure_logged.get(what)
    if last is not None and now - last < FAILURE_LOG_INTERVAL:
        _failures_unlogged[what] = _failures_unlogged.get(what, 0) + 1
        return
    _failure_logged[what] = now
    more = _failures_unlogged.pop(what, 0)
    since = f" ({more} more since the last report)" if more else ""
    _log.exception("%s failed%s", what, since)


class CallContext:
    """Per-worker state the callbacks read: the agent inside wasm now and the node's services.

    ``agents`` is the runtime's name -> `Agent` map (read-only here) and ``wake`` puts an agent
    that just became ready on the worker's run queue: `send` queues a message for a local agent
    itself (`Agent.offer`) and goes through ``route`` only for anyone else.
    """

    __slots__ = (
        "agent",
        "agents_get",
        "data",
        "external_per_second",
        "flush_at",
        "incoming",
        "inst",
        "journal",
        "journal_entries",
        "locate",
        "log_budget",
        "max_message_size",
        "record",
        "replied",
        "route",
        "run_queue",
        "schedule",
        "sends_left",
        "sends_per_message",
        "stamper",
        "timers_writable",
        "wake",
    )

    def __init__(
        self,
        *,
        agents: Mapping[str, Agent],
        wake: Callable[[Agent], None],
        run_queue: deque[Agent] | None = None,
        route: Callable[[str, bytes], int],
        schedule: Callable[[float, str, bytes], None],
        max_message_size: int,
        timers_writable: Callable[[], bool],
        journal: MessageJournal | None = None,
        max_sends_per_message: int = 1000,
        max_external_sends_per_second: int = 10_000,
        locate: Callable[[str], str | None] | None = None,
    ) -> None:
        self.agents_get = agents.get
        #: The node hosting a name when it is another node of the cluster (None: no cluster).
        self.locate = locate
        self.wake = wake
        #: The worker's own run queue, when `wake` is its ``wake_local`` (which appends to an
        #: empty queue unconditionally, so `local` may do that itself).
        self.run_queue = run_queue
        self.journal = journal
        #: The journal's inlined `sent` (see `MessageJournal.hot_path`).
        self.record: Callable[[tuple[Any, ...]], None] | None = None
        self.journal_entries: Sized = ()
        self.flush_at = 0
        if journal is not None:
            self.record, self.journal_entries, self.flush_at = journal.hot_path()
        self.route = route
        self.schedule = schedule
        #: False while timers cannot be stored (`schedule` returns ERR_STORAGE).
        self.timers_writable = timers_writable
        self.max_message_size = max_message_size
        self.stamper = Stamper()
        self.agent: Agent | None = None
        self.inst: Instance | None = None
        self.data: bytes | None = None  # the message being handled (None in init)
        self.incoming: Incoming | None = None
        self.log_budget = LOG_BUDGET
        self.sends_per_message = max_sends_per_message
        #: `send` calls left while handling the current message (reset per message).
        self.sends_left = max_sends_per_message
        self.external_per_second = max_external_sends_per_second
        #: The `incoming` whose sender got its one uncounted reply (see `_send_external`).
        self.replied: Incoming | None = None

    def enter(self, agent: Agent, inst: Instance, data: bytes | None) -> None:
        """Make ``agent`` (running in ``inst``, handling ``data``) the current caller."""
        self.agent = agent
        self.inst = inst
        self.data = data
        self.incoming = None
        self.log_budget = LOG_BUDGET
        self.sends_left = self.sends_per_message

    def local(self, receiver: str, data: bytes) -> int | None:
        """Queue ``data`` for a local agent: OK, ERR_BACKPRESSURE, or None (no running one)."""
        target = self.agents_get(receiver)
        if target is None:
            return None
        rc = target.offer(data)
        if rc is _WAKE:
            # The usual case of `wake`: the worker's run queue is empty (the sender runs,
            # its receiver is next), and ``wake_local`` would append to it.
            run_queue = self.run_queue
            if run_queue is not None and not run_queue:
                run_queue.append(target)
            else:
                self.wake(target)
            return _OK
        if rc is _CLOSED:
            return None
        return _BACKPRESSURE if rc else _OK

    def send(self, data: bytes | memoryview) -> int:
        """Stamp and route one outgoing message; an ABI return code.

        Budgets, checked with a counter compare each: `sends_left` per handled message, and
        `external_allowed` per agent and second for receivers that are not running local
        agents. A refused send (``-4``, ``-7``) leaves nothing behind: a full mailbox is
        refused (under its lock) before the journal sees the message, and a send to an agent
        that stopped meanwhile and is over budget is undone with `retract` (no history, no
        pending row).
        """
        agent = self.agent
        if agent is None:
            return abi.ERR_NOT_PERMITTED
        left = self.sends_left
        if left <= 0:
            agent.sends_over_budget += 1
            return abi.ERR_OVER_BUDGET
        self.sends_left = left - 1
        if len(data) > self.max_message_size:
            return abi.ERR_TOO_LARGE
        stamper = self.stamper
        incoming = self.incoming
        if incoming is None:  # decoded lazily, once per handled message, and only if it sends
            incoming = self.incoming = stamper.incoming_for(self.data)
        try:
            receiver, out = stamper.stamp(data, agent.sender_json, incoming, agent.name)
        except InvalidMessage:
            return abi.ERR_MALFORMED
        if type(receiver) is not str or stamper.expired:
            return self._send_other(receiver, out)
        target = self.agents_get(receiver)
        if target is None:
            return self._send_external(agent, stamper.conversation, receiver, out)
        # The usual case: one local receiver. `target.offer(out)` inlined (one Python call less
        # per message), with `journal.sent` (inlined too) recorded under the mailbox lock: only
        # once the message is sure to be queued, and before its receiver can handle it (so its
        # handled mark, maybe on another worker, always comes later in the journal).
        lock = target.lock
        lock.acquire()
        if target.closed:
            lock.release()
            return self._send_closed(agent, receiver, out)
        mailbox = target.mailbox
        size = len(out)
        if len(mailbox) >= target.capacity or (
            target.offered_bytes - target.popped_bytes + size > target.max_queued_bytes and mailbox
        ):
            lock.release()
            return _BACKPRESSURE  # refused before anything is recorded
        record = self.record
        if record is not None:
            record((stamper.conversation, out, receiver))
        mailbox.append(out)
        target.offered_bytes += size
        if target.scheduled:  # queued; the receiver is scheduled already
            lock.release()
        else:
            target.scheduled = True
            lock.release()
            # The usual case of `wake`: the worker's run queue is empty (the sender runs,
            # its receiver is next), and ``wake_local`` would append to it.
            run_queue = self.run_queue
            if run_queue is not None and not run_queue:
                run_queue.append(target)
            else:
                self.wake(target)
        if record is not None and (
            len(self.journal_entries) >= self.flush_at or size >= LARGE_MESSAGE
        ):
            self.journal.flush()  # type: ignore[union-attr]
        return _OK

    def _send_closed(self, agent: Agent, receiver: str, out: bytes) -> int:
        """`send` to a local agent that stopped meanwhile: delivery dead-letters it."""
        journal = self.journal
        if journal is not None:
            journal.sent(self.stamper.conversation, out, receiver)
            journal.handled(receiver, out)  # not queued locally: nothing to redeliver
        if self.external_allowed(agent):
            return self.route(receiver, out)
        if journal is not None:
            journal.retract(out)
        return abi.ERR_OVER_BUDGET

    def external_allowed(self, agent: Agent) -> bool:
        """Take one send from the agent's per-second budget for non-local receivers."""
        credit = agent.external_credit
        if credit > 0:
            agent.external_credit = credit - 1
            return True
        now = monotonic()
        if now - agent.external_window >= 1.0:
            agent.external_window = now
            agent.external_credit = self.external_per_second - 1
            return True
        agent.sends_over_budget += 1
        return False

    def _send_external(
        self, agent: Agent, conversation: str | None, receiver: str, out: bytes
    ) -> int:
        """`send` to one receiver that is no local agent (clients, unknown names, remote).

        The first reply to the sender of the message being handled is not counted: answering
        API clients is bounded by what they send, at any rate.
        """
        incoming = self.incoming
        if incoming is not self.replied and receiver == incoming.sender:  # type: ignore[union-attr]
            self.replied = incoming
        elif not self.external_allowed(agent):
            return abi.ERR_OVER_BUDGET
        journal = self.journal
        if journal is not None:
            locate = self.locate
            node = None if locate is None else locate(receiver)
            if node is not None:  # another node's agent: the outbox row commits with it
                journal.sent_remote(conversation, out, receiver, node)
                return _OK
            journal.sent(conversation, out, None)  # history only: nothing to redeliver
        return self.route(receiver, out)

    def _send_other(self, receiver: str | list[str], out: bytes) -> int:
        """`send` for a receiver list, or a message whose ``reply_by`` has passed.

        Each receiver of a list counts as one send of the per-message budget.
        """
        agent = self.agent
        assert agent is not None
        extra = 0 if type(receiver) is str else len(receiver) - 1
        if extra > self.sends_left:
            agent.sends_over_budget += 1
            return abi.ERR_OVER_BUDGET
        self.sends_left -= extra
        journal = self.journal
        if journal is None:
            return self._deliver(agent, receiver, out)
        if self.stamper.expired:  # delivery dead-letters it: non-local for the budget
            receivers = [receiver] if type(receiver) is str else receiver
            if not all([self.external_allowed(agent) for _ in receivers]):
                return abi.ERR_OVER_BUDGET
            journal.sent(self.stamper.conversation, out, None)
            for one in receivers:
                self.route(one, out)
            return abi.OK
        journal.sent(self.stamper.conversation, out, None)
        rc = abi.OK
        delivered = False
        locate = self.locate
        for one in receiver:
            node = None if locate is None or self.agents_get(one) else locate(one)
            if node is not None:  # another node's agent: an outbox row (history is above)
                if not self.external_allowed(agent):
                    rc = abi.ERR_OVER_BUDGET
                    continue
                journal.sent_remote(None, out, one, node)
                delivered = True
                continue
            journal.sent(None, out, one)
            code = self.local(one, out)
            if code is None:
                journal.handled(one, out)
                code = self.route(one, out) if self.external_allowed(agent) else abi.ERR_OVER_BUDGET
            elif code:
                journal.handled(one, out)
            if code:
                rc = code
            else:
                delivered = True
        if not delivered:
            journal.retract(out)
        return rc

    def _deliver(self, agent: Agent, receiver: str | list[str], out: bytes) -> int:
        rc = abi.OK
        for one in [receiver] if type(receiver) is str else receiver:
            code = self.local(one, out)
            if code is None:
                code = self.route(one, out) if self.external_allowed(agent) else abi.ERR_OVER_BUDGET
            if code:
                rc = code
        return rc


def bind(cx: CallContext) -> None:
    """Bind ``cx`` to the calling thread (a worker does this once)."""
    _tls.cx = cx


def _range(inst: Instance, ptr: int, length: int) -> memoryview | None:
    end = ptr + length
    if end > inst.size and not inst.covers(end):
        return None
    return inst.view[ptr:end]


# -- the host functions: plain Python functions of the call's arguments -----------------------
# (i32 arguments arrive unsigned, i64 signed); each returns its i32 result (None for `log`).
# `define_host_functions` registers them through the C trampoline or a ctypes adapter.


def send(ptr: int, length: int) -> int:
    """``send(ptr, len) -> i32``: stamp and route one message."""
    try:
        cx: CallContext = _tls.cx
        inst = cx.inst
        end = ptr + length
        if inst is None or (end > inst.size and not inst.covers(end)):
            return abi.ERR_MALFORMED
        return cx.send(inst.view[ptr:end])
    except Exception:
        _failed("caxton.send")
        return abi.ERR_MALFORMED


def schedule(delay_ms: int, ptr: int, length: int) -> int:
    """``schedule(delay_ms: i64, ptr, len) -> i32``: deliver a message later.

    ERR_STORAGE while the store is known not to write (a full disk: `TimerBackend.writable`),
    as `kv_set`; a timer accepted (0) is stored in the background, like a sent message.
    """
    try:
        cx: CallContext = _tls.cx
        inst, agent = cx.inst, cx.agent
        data = None if inst is None else _range(inst, ptr, length)
        if data is None or agent is None:
            return abi.ERR_MALFORMED
        if len(data) > cx.max_message_size:
            return abi.ERR_TOO_LARGE
        if cx.incoming is None:
            cx.incoming = cx.stamper.incoming_for(cx.data)
        receiver, out = cx.stamper.stamp(data, agent.sender_json, cx.incoming)
        receivers = [receiver] if isinstance(receiver, str) else receiver
        if not cx.timers_writable():
            return abi.ERR_STORAGE
        with agent.lock:  # the agent's pending timers (they fire on the loop thread)
            if agent.timers + len(receivers) > agent.max_timers:
                return abi.ERR_QUOTA
            agent.timers += len(receivers)
        for one in receivers:
            cx.schedule(max(0, delay_ms) / 1000.0, one, out)
        return abi.OK
    except InvalidMessage:
        return abi.ERR_MALFORMED
    except Exception:
        _failed("caxton.schedule")
        return abi.ERR_MALFORMED


def log(level: int, ptr: int, length: int) -> None:
    """``log(level, ptr, len)``: one line of the agent's log (within its budget)."""
    try:
        cx: CallContext = _tls.cx
        inst, agent = cx.inst, cx.agent
        if inst is None or agent is None:
            return
        if length > cx.log_budget:
            agent.logs.dropped_per_message += 1
            cx.log_budget = 0
            return
        data = _range(inst, ptr, length)
        if data is not None and agent.logs.budget.admit(min(length, MAX_LINE)):  # per second
            cx.log_budget -= length
            # The level is an i32 read unsigned: a negative level stays negative (and invalid).
            signed = level - (1 << 32) if level & 0x80000000 else level
            agent.logs.append(signed, bytes(data).decode("utf-8", "replace"))
    except Exception:
        _failed("caxton.log")


def kv_get(kptr: int, klen: int, vptr: int, vcap: int) -> int:
    """``kv_get(key, key_len, buf, cap) -> i32``: the value's length, or KV_ABSENT."""
    try:
        cx: CallContext = _tls.cx
        inst, agent = cx.inst, cx.agent
        key = None if inst is None else _range(inst, kptr, klen)
        if key is None or agent is None or inst is None:
            return abi.ERR_MALFORMED
        kv = agent.kv
        if kv is None:
            return abi.ERR_NOT_PERMITTED
        value = kv.get(bytes(key))
        if value is None:
            return abi.KV_ABSENT
        n = len(value)
        if n <= vcap:
            target = _range(inst, vptr, n)
            if target is None:
                return abi.ERR_MALFORMED
            target[:] = value
        return n
    except Exception:
        _failed("caxton.kv_get")
        return abi.ERR_MALFORMED


def kv_set(kptr: int, klen: int, vptr: int, vlen: int) -> int:
    """``kv_set(key, key_len, value, value_len) -> i32``: OK once stored, or ERR_STORAGE."""
    try:
        cx: CallContext = _tls.cx
        inst, agent = cx.inst, cx.agent
        if inst is None or agent is None:
            return abi.ERR_NOT_PERMITTED
        if klen > MAX_KV_KEY or vlen > cx.max_message_size:
            return abi.ERR_TOO_LARGE
        key = _range(inst, kptr, klen)
        value = _range(inst, vptr, vlen)
        if key is None or value is None:
            return abi.ERR_MALFORMED
        kv = agent.kv
        if kv is None:
            return abi.ERR_NOT_PERMITTED
        return kv.set(bytes(key), bytes(value))  # OK, or ERR_QUOTA (nothing kept)
    except StorageError:
        return abi.ERR_STORAGE
    except Exception:
        _failed("caxton.kv_set")
        return abi.ERR_MALFORMED


def kv_delete(kptr: int, klen: int) -> int:
    """``kv_delete(key, key_len) -> i32``: OK, KV_ABSENT, or ERR_STORAGE (still stored)."""
    try:
        cx: CallContext = _tls.cx
        inst, agent = cx.inst, cx.agent
        key = None if inst is None else _range(inst, kptr, klen)
        if key is None or agent is None:
            return abi.ERR_MALFORMED
        kv = agent.kv
        if kv is None:
            return abi.ERR_NOT_PERMITTED
        return abi.OK if kv.delete(bytes(key)) else abi.KV_ABSENT
    except StorageError:
        return abi.ERR_STORAGE
    except Exception:
        _failed("caxton.kv_delete")
        return abi.ERR_MALFORMED


_IMPLEMENTATIONS: dict[str, Callable[..., int | None]] = {
    "send": send,
    "log": log,
    "kv_get": kv_get,
    "kv_set": kv_set,
    "kv_delete": kv_delete,
    "schedule": schedule,
}


def _kinds(params: list[wasmtime.ValType]) -> str:
    """The trampoline's parameter kinds: ``i`` per i32, ``I`` per i64."""
    return "".join("I" if p == wasmtime.ValType.i64() else "i" for p in params)


def ctypes_callback(
    fn: Callable[..., int | None], kinds: str, returns: bool, on_error: int = abi.ERR_MALFORMED
) -> Any:
    """A ctypes raw callback calling ``fn`` as the C trampoline does (no C extension).

    Arguments are read from the i32 slots with a 16-byte stride: slot k's low i32 is
    ``ar[4 * k]`` (an i64 is ``ar[4 * k]`` and ``ar[4 * k + 1]``). A result that is not an
    i32 (or an exception) becomes ``on_error``.
    """
    if kinds == "ii" and returns:  # `send` and `kv_delete`: the hot shape, unrolled

        def two(env: Any, caller: Any, ar: Any, nar: int) -> int:
            try:
                ar[0] = fn(ar[0] & _M, ar[4] & _M)
            except Exception:
                _failed("a caxton host function")
                ar[0] = on_error
            return 0

        return HOST_CALLBACK(two)

    def call(env: Any, caller: Any, ar: Any, nar: int) -> int:
        try:
            args = [
                ar[4 * k] & _M if kind == "i" else (ar[4 * k] & _M) | (ar[4 * k + 1] << 32)
                for k, kind in enumerate(kinds)
            ]
            result = fn(*args)
            if returns:
                ok = type(result) is int and -(1 << 31) <= result < (1 << 31)
                ar[0] = result if ok else on_error
        except Exception:
            _failed("a caxton host function")
            if returns:
                ar[0] = on_error
        return 0

    return HOST_CALLBACK(call)


# The callback objects must outlive every linker and instance that uses them.
_KEEP_ALIVE: dict[tuple[str, bool], tuple[Any, Any, Any]] = {}


def _callback(name: str, accel: ModuleType | None) -> tuple[Any, Any, Any]:
    """The raw callback, its env pointer and the object owning them, for host function ``name``."""
    kept = _KEEP_ALIVE.get((name, accel is not None))
    if kept is not None:
        return kept
    params, results = abi.HOST_SIGNATURES[name]
    fn, kinds, returns = _IMPLEMENTATIONS[name], _kinds(params), bool(results)
    if accel is None:
        callback = ctypes_callback(fn, kinds, returns)
        kept = (cast(callback, ffi.wasmtime_func_unchecked_callback_t), None, callback)
    else:
        hf = accel.HostFunction(fn, kinds, returns, abi.ERR_MALFORMED)
        trampoline = ffi.wasmtime_func_unchecked_callback_t(accel.trampoline_address())
        kept = (trampoline, c_void_p(hf.env()), hf)
    _KEEP_ALIVE[(name, accel is not None)] = kept
    return kept


def define_host_functions(linker: wasmtime.Linker, accel: ModuleType | None = None) -> None:
    """Define the six ``caxton`` imports on ``linker`` as unchecked raw callbacks.

    With ``accel`` (the C extension) they go through its trampoline, else through ctypes.
    """
    for name, (params, results) in abi.HOST_SIGNATURES.items():
        callback, env, _owner = _callback(name, accel)
        define_unchecked(
            linker, abi.HOST_MODULE, name, wasmtime.FuncType(params, results), callback, env
        )
