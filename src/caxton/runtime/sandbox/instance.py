"""One agent instance: a `Store` with limits and WASI, the instantiated module, raw call handles.

A store is created per instance with `Store.set_limits` (linear memory capped at the agent's
limit, one instance, one memory, bounded tables) and its own WASI context: argv ``[name]``, the
agent's env, stdout/stderr captured into its log, clocks and random as WASI provides them, no
network, and no filesystem unless a grant directory is given (preopened as ``/data``).

For reactors the exports the hot path calls unchecked (``caxton_alloc``, ``caxton_handle``) are
verified once per module by `validate.inspect_module` before their raw addresses are handed to
the instance's `MessageEntry` (the C extension's ``Reactor``, or `_ffi.Reactor` through ctypes).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import wasmtime
from wasmtime import _ffi as ffi

from caxton.errors import AgentFailure, InvalidWasm
from caxton.runtime.admission.globals import SavedGlobal
from caxton.runtime.sandbox import _ffi, wasi_quota
from caxton.runtime.sandbox._errors import map_wasm_errors, near_limit
from caxton.runtime.sandbox.globals import GlobalValue, read_globals, write_globals
from caxton.runtime.sandbox.quota import TempStorage

__all__ = ["Instance", "MessageEntry", "MessageEntryType", "Snapshot"]

_PAGE = 64 * 1024
_ZERO_PAGE = bytes(_PAGE)
_buffers = threading.local()


def _page_buffer() -> bytearray:
    """This thread's reusable 64 KiB scratch buffer (page-by-page compares)."""
    buf: bytearray | None = getattr(_buffers, "page", None)
    if buf is None:
        buf = _buffers.page = bytearray(_PAGE)
    return buf


_MAX_TABLE_ELEMENTS = 100_000


class MessageEntry(Protocol):
    """A reactor's message entry point: ``caxton_alloc`` + copy + ``caxton_handle``."""

    def deliver(self, data: bytes, /) -> int:
        """The handler's i32 result, or `_ffi.FAILED` / `_ffi.BAD_POINTER`."""
        ...

    def arm(self, ticks: int, /) -> None:
        """Set the store's epoch deadline ``ticks`` epochs from the current one."""
        ...

    def take_failure(self) -> tuple[int, int]:
        """The owned ``wasmtime_error_t*`` and ``wasm_trap_t*`` of the last failed call."""
        ...


#: Builds a `MessageEntry` from raw addresses: ``(ctx, alloc, handle, memory, base)``.
MessageEntryType = Callable[[int, int, int, int, int], MessageEntry]


class Snapshot:
    """The saved state of a hibernated reactor agent: linear memory and mutable globals.

    Linear memory is mostly zero pages, so only the others are kept (index -> 64 KiB of
    bytes); a restore writes just those into the fresh instance. ``globals`` holds every
    mutable global as (index, type, raw bits); a snapshot stored before globals were kept has
    none, and its restore writes memory only, as it did then.
    """

    __slots__ = ("data", "globals", "size", "version")

    def __init__(
        self,
        size: int,
        data: dict[int, bytes],
        version: int,
        globals: tuple[GlobalValue, ...] = (),
    ) -> None:
        self.size = size
        self.data = data
        self.version = version
        self.globals = globals

    @property
    def pages(self) -> int:
        """The memory's size in 64 KiB pages."""
        return -(-self.size // _PAGE)

    @property
    def memory(self) -> bytes:
        """The whole memory, zero pages included (for tests and tools)."""
        memory = bytearray(self.size)
        for index, page in self.data.items():
            memory[index * _PAGE : index * _PAGE + len(page)] = page
        return bytes(memory)


class Instance:
    """A live instance of one agent module in its own store.

    Attributes read on the hot path: ``ctx`` (the store context), ``entry`` (reactors only:
    delivers one message), ``view``/``size`` (linear memory). Not thread-safe: the one worker
    running the agent owns it.
    """

    __slots__ = (
        "_exports",
        "_funcs",
        "armed_at",
        "ctx",
        "entry",
        "fuel",
        "instance",
        "limit",
        "memory",
        "reactor",
        "size",
        "store",
        "view",
        "wasi",
    )

    def __init__(
        self,
        engine: wasmtime.Engine,
        pre: wasmtime.InstancePre,
        *,
        reactor: bool,
        name: str,
        env: Mapping[str, str],
        grant_dir: Path | None,
        memory_limit: int,
        fuel: int | None,
        deadline_ticks: int,
        stdout: Callable[[bytes], int],
        stderr: Callable[[bytes], int],
        stdin: bytes | None = None,
        entry_type: MessageEntryType = _ffi.Reactor,
        granted: tuple[wasmtime.InstancePre, TempStorage] | None = None,
    ) -> None:
        self.reactor = reactor
        self.limit = memory_limit
        store = self.store = wasmtime.Store(engine)
        store.set_limits(
            memory_size=memory_limit,
            table_elements=_MAX_TABLE_ELEMENTS,
            instances=1 if granted is None else 2,  # a granted agent's writes go via a relay
            tables=4,
            memories=1 if granted is None else 2,
        )
        #: Fuel per message as a reusable ctypes argument (None: no metering).
        self.fuel = None if fuel is None else _ffi.uint64(fuel)
        if fuel is not None:
            store.set_fuel(fuel)
        wasi = self.wasi = wasmtime.WasiConfig()
        wasi.argv = [name]
        wasi.env = list(env.items())
        wasi.stdout_custom = stdout
        wasi.stderr_custom = stderr
        if stdin is not None:
            buf = (ctypes.c_ubyte * len(stdin)).from_buffer_copy(stdin)
            vec = ffi.wasm_byte_vec_t()
            ffi.wasm_byte_vec_new(
                ctypes.byref(vec), len(stdin), ctypes.cast(buf, ctypes.POINTER(ctypes.c_ubyte))
            )
            ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))  # takes ownership
        if grant_dir is not None:
            wasi.preopen_dir(str(grant_dir), "/data")
        store.set_wasi(wasi)
        store.set_epoch_deadline(deadline_ticks)
        #: `Engine.ticks` when the epoch deadline was last armed (-1: re-arm before a call).
        self.armed_at = -1
        self.ctx = _ffi.context_pointer(store)
        with map_wasm_errors(what="instantiating the agent"):
            self.instance = pre.instantiate(store)
            if granted is not None:
                wasi_quota.attach(self, *granted)
        self._exports = self.instance.exports(store)
        self._funcs: list[wasmtime.Func] = []
        self.memory: wasmtime.Memory | None = None
        self.entry: MessageEntry | None = None
        self.size = 0
        self.view = memoryview(b"")
        memory = self._exports.get("memory")
        if isinstance(memory, wasmtime.Memory):
            self.memory = memory
            self.refresh()
        if reactor:
            # Signatures were verified once per module by `validate.inspect_module`: calling
            # a wrong signature unchecked would corrupt memory instead of raising.
            alloc, handle = self._exports.get("caxton_alloc"), self._exports.get("caxton_handle")
            if not isinstance(alloc, wasmtime.Func) or not isinstance(handle, wasmtime.Func):
                raise InvalidWasm("not an ABI v1 reactor: caxton_alloc/caxton_handle missing")
            if self.memory is None:
                raise InvalidWasm("not an ABI v1 reactor: no exported memory")
            self._funcs += (alloc, handle)  # keep them alive: the entry holds their addresses
            base, _ = _ffi.memory_base_and_size(store, self.memory)
            self.entry = entry_type(
                self.ctx.value or 0,
                _ffi.func_address(alloc).value or 0,
                _ffi.func_address(handle).value or 0,
                ctypes.addressof(self.memory._memory),
                base,
            )

    # -- memory ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the memory size (it may have grown) and rebuild the view."""
        if self.memory is None:
            return
        base, size = _ffi.memory_base_and_size(self.store, self.memory)
        if size != self.size:
            self.size = size
            self.view = _ffi.memory_view(base, size) if size else memoryview(b"")

    def covers(self, end: int) -> bool:
        """True if ``end`` is within linear memory (re-reading its size once if needed)."""
        if end <= self.size:
            return True
        self.refresh()
        return end <= self.size

    def at_memory_limit(self) -> bool:
        """True when the memory cannot grow by one more page under the store limit."""
        self.refresh()
        return near_limit(self.size, self.limit)

    def snapshot(self, version: int, saved: tuple[SavedGlobal, ...] = ()) -> Snapshot:
        """Copy the non-zero pages of linear memory and the ``saved`` globals out."""
        values = read_globals(self.store, self._exports, saved) if saved else ()
        self.refresh()
        view, size, buf = self.view, self.size, _page_buffer()
        data: dict[int, bytes] = {}
        for start in range(0, size - size % _PAGE, _PAGE):
            buf[:] = view[start : start + _PAGE]  # one memcpy, then a memcmp below
            if buf != _ZERO_PAGE:
                data[start // _PAGE] = bytes(buf)
        tail = size % _PAGE
        if tail and any(view[size - tail : size]):
            data[size // _PAGE] = bytes(view[size - tail : size])
        return Snapshot(size, data, version, values)

    def restore(self, snapshot: Snapshot, saved: tuple[SavedGlobal, ...] = ()) -> None:
        """Grow memory to the snapshot's size, write its pages and its globals back.

        The instance is fresh: a page the snapshot does not keep is zeroed only if the
        module's own initialisation (data segments) left something in it. ``saved``: the
        module's saved globals (`ModuleInfo.saved_globals`).
        """
        if self.memory is None:
            raise AgentFailure("cannot restore: the agent has no memory", cause="trap")
        if snapshot.globals:
            write_globals(self.store, self._exports, saved, snapshot.globals)
        self.refresh()
        missing = snapshot.pages - self.size // _PAGE
        if missing > 0:
            with map_wasm_errors(what="restoring the agent"):
                self.memory.grow(self.store, missing)
            self.refresh()
        view, buf, data = self.view, _page_buffer(), snapshot.data
        for index in range(min(snapshot.pages, self.size // _PAGE)):
            start = index * _PAGE
            page = data.get(index)
            if page is not None:
                view[start : start + len(page)] = page
                continue
            buf[:] = view[start : start + _PAGE]
            if buf != _ZERO_PAGE:
                view[start : start + _PAGE] = _ZERO_PAGE

    # -- calls through the high-level API (once per instance, not per message) -----------------

    def call_optional(self, name: str, deadline_ticks: int) -> int | None:
        """Call a no-argument export if present; its i32 result, 0 for no result, None if absent."""
        func = self._exports.get(name)
        if not isinstance(func, wasmtime.Func):
            return None
        self.store.set_epoch_deadline(deadline_ticks)
        self.armed_at = -1
        with map_wasm_errors(memory_near_limit=self.at_memory_limit, what=f"calling {name}"):
            result = func(self.store)
        return result if isinstance(result, int) else 0

    def close(self) -> None:
        """Drop the views and the store (idempotent)."""
        self.entry = None  # it holds raw pointers into the store
        wasi_quota.detach(self)
        self.view = memoryview(b"")
        self.size = 0
        self._funcs.clear()
        self.memory = None
        self.store.close()
