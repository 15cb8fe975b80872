"""Raw wasmtime C-API access for the message hot path.

wasmtime-py's convenience layer (``Func.__call__``, ``Memory.read``, ``define_func``) rebuilds
types and converts values in Python on every call: ~30-75 µs per call. The hot path instead calls
``wasmtime_func_call_unchecked`` through its own ctypes function object with pre-built arguments
(~0.7 µs) and reads guest memory through a memoryview.

Safety rules this module relies on (enforced by its callers):

* exports are called unchecked only after their signatures were checked (`admission.validate`);
* the engine sets ``memory_may_move = False``, so a memory's base address never changes and a
  view stays valid for the part of memory it covers (re-read the size when a range exceeds it);
* views are dropped before their store is closed;
* the library is loaded as ``CDLL``: the GIL is released while wasm runs, so a spinning guest on a
  worker thread never stops the event loop or the other workers.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, addressof, byref, c_char, c_int32, c_size_t, c_uint64, c_void_p, cast
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "BAD_POINTER",
    "FAILED",
    "HOST_CALLBACK",
    "Reactor",
    "address_of",
    "call_unchecked",
    "define_unchecked",
    "error_from_ptr",
    "func_address",
    "get_fuel",
    "increment_epoch",
    "memory_base_and_size",
    "memory_view",
    "set_epoch_deadline",
    "set_fuel",
    "trap_from_ptr",
]

_lib = ctypes.CDLL(str(ffi.filename))


def _raw_function(name: str, restype: Any) -> Any:
    """A C-API function with no argument conversion: callers pass ready ctypes values."""
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = None
    return fn


#: ``wasmtime_func_call_unchecked(ctx, func, args_and_results, len, trap_out) -> error*``
call_unchecked = _raw_function("wasmtime_func_call_unchecked", c_void_p)
#: ``wasmtime_memory_data_size(ctx, memory) -> size_t``
memory_data_size = _raw_function("wasmtime_memory_data_size", c_size_t)
#: ``wasmtime_context_set_epoch_deadline(ctx, ticks)``
set_epoch_deadline = _raw_function("wasmtime_context_set_epoch_deadline", None)
#: ``wasmtime_context_set_fuel(ctx, fuel) -> error*``
set_fuel = _raw_function("wasmtime_context_set_fuel", c_void_p)
#: ``wasmtime_context_get_fuel(ctx, uint64_t *fuel) -> error*``
get_fuel = _raw_function("wasmtime_context_get_fuel", c_void_p)

_increment_epoch = _lib.wasmtime_engine_increment_epoch
_increment_epoch.restype = None
_increment_epoch.argtypes = [c_void_p]

#: The raw host callback type: ``(env, caller, args_and_results, n) -> wasm_trap_t*``.
#: Arguments are read as i32 slots with a 16-byte stride: slot k's low i32 is ``ar[4 * k]``.
HOST_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_int32), c_size_t)


_NO_FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)()  # a NULL function pointer


def define_unchecked(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    ty: wasmtime.FuncType,
    callback: object,
    env: c_void_p | None = None,
) -> None:
    """Define ``module.name`` on ``linker`` as a raw unchecked host callback.

    ``callback`` is a ``wasmtime_func_unchecked_callback_t`` (a ctypes callback cast to it, or
    the C trampoline's address); it and ``env``'s owner must outlive the linker's instances.
    """
    raw_module, raw_name = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(),
        raw_module,
        len(raw_module),
        raw_name,
        len(raw_name),
        ty.ptr(),
        callback,
        env,
        _NO_FINALIZER,
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def increment_epoch(engine: wasmtime.Engine) -> None:
    """Advance the engine's epoch by one tick (thread-safe; called by the ticker thread)."""
    _increment_epoch(cast(engine.ptr(), c_void_p))


def func_address(func: wasmtime.Func) -> c_void_p:
    """The address of a `Func`'s ``wasmtime_func_t``; the caller keeps ``func`` alive."""
    return c_void_p(addressof(func._func))


#: `Reactor.handle` results outside the i32 range: the call trapped or failed (see
#: `Reactor.take_failure`), or ``caxton_alloc`` returned a pointer outside linear memory.
FAILED = 1 << 32
BAD_POINTER = FAILED + 1


def address_of(fn: object) -> int:
    """The address of a ctypes function pointer (for the C hot path's `setup`)."""
    return cast(fn, c_void_p).value or 0  # type: ignore[arg-type]


class Reactor:
    """One reactor instance's ``caxton_alloc`` + copy + ``caxton_handle``, through ctypes.

    The pure-Python twin of ``_accel.Reactor`` (same constructor, results and failure hand-
    over): used when the C extension is not built. Each holds its own argument slots: a
    reactor is run by one worker at a time.
    """

    __slots__ = (
        "_alloc",
        "_args",
        "_args_v",
        "_base",
        "_ctx",
        "_error",
        "_handle",
        "_iv",
        "_memory",
        "_size",
        "_trap",
        "_trap_v",
        "_two",
        "_view",
    )

    def __init__(self, ctx: int, alloc: int, handle: int, memory: int, base: int) -> None:
        self._ctx = c_void_p(ctx)
        self._alloc = c_void_p(alloc)
        self._handle = c_void_p(handle)
        self._memory = c_void_p(memory)
        self._base = base
        self._args = (ffi.wasmtime_val_raw_t * 2)()
        self._iv = memoryview(self._args).cast("B").cast("i")
        self._args_v = c_void_p(addressof(self._args))
        self._trap = c_void_p()
        self._trap_v = c_void_p(addressof(self._trap))
        self._two = c_size_t(2)
        self._error = 0
        self._size = 0
        self._view = memoryview(b"")
        self._refresh()

    def _refresh(self) -> None:
        size = int(memory_data_size(self._ctx, self._memory))
        if size != self._size:
            self._size = size
            self._view = memory_view(self._base, size)

    def deliver(self, data: bytes) -> int:
        """``caxton_handle``'s i32 result for ``data``, or `FAILED` / `BAD_POINTER`."""
        iv, ctx, args_v, two, trap_v = self._iv, self._ctx, self._args_v, self._two, self._trap_v
        n = len(data)
        iv[0] = n
        err = call_unchecked(ctx, self._alloc, args_v, two, trap_v)
        if err or self._trap:
            self._error = err or 0
            return FAILED
        ptr = iv[0] & 0xFFFFFFFF
        end = ptr + n
        if end > self._size:
            self._refresh()
            if end > self._size:
                return BAD_POINTER
        self._view[ptr:end] = data
        iv[0] = ptr
        iv[4] = n
        err = call_unchecked(ctx, self._handle, args_v, two, trap_v)
        if err or self._trap:
            self._error = err or 0
            return FAILED
        return iv[0]

    def arm(self, ticks: int) -> None:
        """Set the store's epoch deadline ``ticks`` epochs from the current one."""
        set_epoch_deadline(self._ctx, c_uint64(ticks))

    def take_failure(self) -> tuple[int, int]:
        """The owned ``wasmtime_error_t*`` and ``wasm_trap_t*`` of the last failed call."""
        out = (self._error, self._trap.value or 0)
        self._error = 0
        self._trap.value = None
        return out


def trap_from_ptr(address: int) -> wasmtime.Trap:
    """Take ownership of a ``wasm_trap_t*`` returned through a trap slot."""
    return wasmtime.Trap._from_ptr(cast(c_void_p(address), POINTER(ffi.wasm_trap_t)))


def error_from_ptr(address: int) -> wasmtime.WasmtimeError:
    """Take ownership of a ``wasmtime_error_t*`` returned by a call (ExitTrap for proc_exit)."""
    return wasmtime.WasmtimeError._from_ptr(cast(c_void_p(address), POINTER(ffi.wasmtime_error_t)))


def memory_base_and_size(store: wasmtime.Store, memory: wasmtime.Memory) -> tuple[int, int]:
    """The current base address and byte size of a linear memory."""
    ctx = store._context()
    base = cast(ffi.wasmtime_memory_data(ctx, byref(memory._memory)), c_void_p).value or 0
    size = int(ffi.wasmtime_memory_data_size(ctx, byref(memory._memory)))
    return base, size


def memory_view(base: int, size: int) -> memoryview:
    """A writable byte view of ``size`` bytes of linear memory at ``base``."""
    return memoryview((c_char * size).from_address(base)).cast("B")


def context_pointer(store: wasmtime.Store) -> c_void_p:
    """A store's ``wasmtime_context_t*`` as a reusable ctypes argument."""
    return c_void_p(cast(store._context(), c_void_p).value)


def uint64(value: int) -> c_uint64:
    """A reusable unsigned 64-bit ctypes argument."""
    return c_uint64(value)
