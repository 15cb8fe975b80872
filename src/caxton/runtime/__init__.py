"""The WebAssembly agent runtime.

What an agent is and what it may touch
--------------------------------------
An agent is a WebAssembly module (ABI v1, docs/agents.md) running in its own wasmtime
`Store`: its own linear memory (capped per agent), at most one instance, bounded tables, a
stack limit, an epoch deadline per message and optional fuel. It sees the world only through
its imports: WASI preview 1 with argv ``[name]``, the env it was deployed with, stdout/stderr
that land in its log, clocks and random; no network, and no filesystem unless a directory was
granted (``/data``). The ``caxton`` imports (`sandbox/host.py`) let it send and schedule
messages, log, and keep durable key/value data. Nothing else is reachable from guest code.

A reactor agent keeps one instance between messages and handles one message at a time; a
command agent (a plain WASI program) gets a fresh instance per message with the message on
stdin. A trap, deadline, stack overflow, out-of-fuel or memory-limit hit fails that one message,
never the node: the instance is replaced, under a restart budget. Idle reactors are hibernated
(linear memory saved, instance dropped) and restored transparently by their next message.

Execution model: worker threads drain ready agents in batches (`scheduling/scheduler.py`);
local sends go straight into the receiver's mailbox and the sending worker usually continues
with the receiver itself, so agent-to-agent traffic needs no thread hop
(`scheduling/executor.py`).

Layout
------
Three subsystems, one subpackage each, under the facade the node uses (`Runtime` in
`runtime.py`, `Agent` in `agent.py`, the ports `delivery.py` and `ports.py`, `engine.py`,
`stats.py`, and `abi.py`, the guest ABI that admission and the sandbox share):

* `admission/`: whether uploaded bytes are an agent Caxton can run, and compiled modules;
* `sandbox/`: one agent's instance and its imports (host functions, kv, logs, quotas, the FFI);
* `scheduling/`: worker threads, run queues, instance lifecycle, timers, restarts, hibernation.

Neither `admission` nor `sandbox` imports `scheduling` (tests/test_layers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caxton._lazy import lazy_getattr

if TYPE_CHECKING:
    from caxton.runtime.agent import AgentSpec, AgentState, AgentStatistics
    from caxton.runtime.delivery import Delivery, LocalDelivery, MessageJournal, Offer, Origin
    from caxton.runtime.engine import Compiled, Engine
    from caxton.runtime.ports import (
        AgentEvents,
        KvBackend,
        MemoryKv,
        MemorySnapshots,
        NullEvents,
        SnapshotBackend,
    )
    from caxton.runtime.runtime import Runtime
    from caxton.runtime.sandbox.instance import Snapshot
    from caxton.runtime.sandbox.logs import LogLine
    from caxton.runtime.scheduling.timers import MemoryTimers, TimerBackend
    from caxton.runtime.stats import RuntimeStatistics

# Submodules load on first use, so `import caxton.runtime` stays cheap (the CLI and the
# server's first listener do not wait for wasmtime).
_LAZY = {
    "AgentEvents": "caxton.runtime.ports",
    "AgentSpec": "caxton.runtime.agent",
    "AgentState": "caxton.runtime.agent",
    "AgentStatistics": "caxton.runtime.agent",
    "Compiled": "caxton.runtime.engine",
    "Delivery": "caxton.runtime.delivery",
    "Engine": "caxton.runtime.engine",
    "KvBackend": "caxton.runtime.ports",
    "LocalDelivery": "caxton.runtime.delivery",
    "MessageJournal": "caxton.runtime.delivery",
    "Offer": "caxton.runtime.delivery",
    "Origin": "caxton.runtime.delivery",
    "LogLine": "caxton.runtime.sandbox.logs",
    "MemoryKv": "caxton.runtime.ports",
    "MemorySnapshots": "caxton.runtime.ports",
    "MemoryTimers": "caxton.runtime.scheduling.timers",
    "NullEvents": "caxton.runtime.ports",
    "Runtime": "caxton.runtime.runtime",
    "RuntimeStatistics": "caxton.runtime.stats",
    "Snapshot": "caxton.runtime.sandbox.instance",
    "SnapshotBackend": "caxton.runtime.ports",
    "TimerBackend": "caxton.runtime.scheduling.timers",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

__all__ = [
    "AgentEvents",
    "AgentSpec",
    "AgentState",
    "AgentStatistics",
    "Compiled",
    "Delivery",
    "Engine",
    "KvBackend",
    "LocalDelivery",
    "LogLine",
    "MemoryKv",
    "MemorySnapshots",
    "MemoryTimers",
    "MessageJournal",
    "NullEvents",
    "Offer",
    "Origin",
    "Runtime",
    "RuntimeStatistics",
    "Snapshot",
    "SnapshotBackend",
    "TimerBackend",
]
