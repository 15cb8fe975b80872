"""One wasmtime engine per node: settings, the compiled-module cache, the linker and the ticker.

Everything that is shared by all agents lives here and is created once:

* the wasmtime `Engine` with epoch interruption, the stack limit, fuel metering only when
  configured, and fixed-address memories (``memory_may_move = False``) whose reservation is the
  per-instance memory cap, so 10,000 instances fit in the address space and a memoryview over
  linear memory stays valid while the memory grows;
* the cache of compiled modules (on disk under ``cache_dir``, memory only when None), keyed by
  content hash + wasmtime version + the settings above (`settings_key`), so a restart or
  redeploy never recompiles;
* the `Linker` with WASI preview 1 and the ``caxton`` host functions, and one `InstancePre` per
  module (imports resolved once, instantiation then costs tens of microseconds);
* for agents with a granted directory, a second linker whose WASI file writes are checked
  against `temp_storage_limit` (`wasi_quota`, one `TempStorage` account per node);
* the hot path's flavour: the C extension (`accel`) when it is built, else ctypes; ``accel``
  picks one explicitly (tests run both);
* the epoch ticker: ONE thread that advances the epoch every `tick` seconds; an agent call's
  deadline is ``ceil(timeout / tick) + 1`` ticks after the call starts.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import NamedTuple

import wasmtime

from caxton.config.schema import RuntimeConfig
from caxton.runtime.admission.cache import CachedModule, ModuleCache, validate_and_load
from caxton.runtime.admission.validate import ModuleInfo
from caxton.runtime.sandbox import _ffi, accel, host, wasi_quota
from caxton.runtime.sandbox.instance import MessageEntryType
from caxton.runtime.sandbox.quota import TempStorage

__all__ = ["Compiled", "Engine"]


class Compiled(NamedTuple):
    """What `Engine.compile` returns and `Runtime.start_agent` takes."""

    module: CachedModule
    info: ModuleInfo


_PAGE = 64 * 1024
_GUARD = 64 * 1024


class Engine:
    """The node's wasmtime engine, module cache, linker and epoch ticker.

    `compile` blocks (it may run Cranelift); call it from a thread. `start`/`stop` run the
    ticker; `close` stops it and is idempotent.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        cache_dir: Path | None,
        tick: float = 0.01,
        accelerated: bool | None = None,
    ) -> None:
        if accelerated and accel.ACCEL is None:
            raise RuntimeError("the C hot path (caxton.runtime.sandbox._accel) is not available")
        #: The C extension when used (`accelerated` None: whenever it is available).
        self.accel = None if accelerated is False else accel.ACCEL
        #: What an instance's message entry point is built with.
        self.entry_type: MessageEntryType = (
            _ffi.Reactor if self.accel is None else self.accel.Reactor
        )
        self.config = config
        self.tick = tick
        #: Largest linear memory any instance may have (bytes, whole pages).
        self.memory_reservation = max(_PAGE, -(-config.wasm_memory_limit // _PAGE) * _PAGE)
        self.fuel_enabled = config.fuel is not None
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.max_wasm_stack = config.wasm_stack_limit
        cfg.consume_fuel = self.fuel_enabled
        cfg.memory_may_move = False
        cfg.memory_reservation = self.memory_reservation
        cfg.memory_guard_size = _GUARD
        cfg.memory_reservation_for_growth = 0
        self.wasm = wasmtime.Engine(cfg)
        #: Everything that changes the compiled code; part of the module cache key.
        self.settings_key = (
            f"abi1;epoch;stack={config.wasm_stack_limit};fuel={int(self.fuel_enabled)};"
            f"reserve={self.memory_reservation};guard={_GUARD};move=0"
        )
        self.cache = ModuleCache(self.wasm, cache_dir, settings_key=self.settings_key)
        self.linker = wasmtime.Linker(self.wasm)
        self.linker.define_wasi()
        host.define_host_functions(self.linker, self.accel)
        #: The node's account of granted-directory bytes (``temp_storage_limit``).
        self.temp_storage = TempStorage(config.temp_storage_limit)
        self._granted_linker: wasmtime.Linker | None = None
        self._relay_pre: wasmtime.InstancePre | None = None
        self._pre: dict[tuple[str, bool], wasmtime.InstancePre] = {}
        self._pre_lock = threading.Lock()
        self._stop = threading.Event()
        #: Epoch increments so far, as seen from Python (read by workers without a C call).
        self.ticks = 0
        self._ticker: threading.Thread | None = None
        self._closed = False

    # -- compilation -------------------------------------------------------------------------

    def compile(self, wasm: bytes, *, memory_limit: int | None = None) -> Compiled:
        """Validate and compile (or load from the cache) one module. Blocking.

        Raises `InvalidWasm` / `ModuleTooLarge` with a message that says what is wrong.
        """
        limit = self.config.wasm_memory_limit if memory_limit is None else memory_limit
        module, info = validate_and_load(
            self.cache, wasm, max_size=self.config.max_module_size, memory_limit=limit
        )
        return Compiled(module, info)

    def instance_pre(self, module: CachedModule, *, granted: bool = False) -> wasmtime.InstancePre:
        """The pre-linked form of a module (imports resolved once per module).

        ``granted``: for an agent with a granted directory, whose file writes are checked
        against `temp_storage_limit` (see `wasi_quota`).
        """
        key = (module.sha256, granted)
        pre = self._pre.get(key)
        if pre is None:
            with self._pre_lock:
                pre = self._pre.get(key)
                if pre is None:
                    linker = self._granted() if granted else self.linker
                    pre = self._pre[key] = linker.instantiate_pre(module.module)
        return pre

    def _granted(self) -> wasmtime.Linker:
        """The linker for agents with a grant (made on first use; under `_pre_lock`)."""
        if self._granted_linker is None:
            linker = wasmtime.Linker(self.wasm)
            linker.define_wasi()
            host.define_host_functions(linker, self.accel)
            wasi_quota.define_quota_functions(linker)
            self._granted_linker = linker
        return self._granted_linker

    def relay_pre(self) -> wasmtime.InstancePre:
        """The relay module that forwards a granted agent's checked file writes to WASI."""
        if self._relay_pre is None:
            with self._pre_lock:
                if self._relay_pre is None:
                    relay = wasmtime.Module(self.wasm, wasi_quota.RELAY_WAT)
                    self._relay_pre = self.linker.instantiate_pre(relay)
        return self._relay_pre

    # -- epochs ------------------------------------------------------------------------------

    def deadline_ticks(self, seconds: float) -> int:
        """Epoch ticks for a deadline of ``seconds``.

        Two spare ticks: the current tick is partial, and workers re-arm a deadline at most
        once per tick (`ticks` may lag the engine's epoch by one increment).
        """
        return max(1, math.ceil(seconds / self.tick)) + 2

    def start(self) -> None:
        """Start the epoch ticker thread (idempotent)."""
        if self._closed:
            raise RuntimeError("engine is closed")
        if self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(
                target=self._tick_loop, name="caxton-epoch", daemon=True
            )
            self._ticker.start()

    def _tick_loop(self) -> None:
        engine, stop, tick = self.wasm, self._stop, self.tick
        while not stop.wait(tick):
            _ffi.increment_epoch(engine)
            self.ticks += 1

    def stop(self) -> None:
        """Stop the ticker, first advancing the epoch past every deadline.

        Any guest still running (a worker that did not finish within the shutdown timeout)
        is interrupted at once instead of spinning forever without a ticker.
        """
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
            longest = max(self.config.execution_timeout, self.config.agent_startup_timeout)
            for _ in range(self.deadline_ticks(longest) + 1):
                _ffi.increment_epoch(self.wasm)

    def close(self) -> None:
        """Stop the ticker and forget pre-linked modules (idempotent)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._pre.clear()
