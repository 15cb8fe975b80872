"""Raw wasmtime C-API access for the message hot path.

wasmtime-py's convenience layer (``Func.__call__``, ``Memory.read``, ``define_func``) rebuilds
types and converts values in Python on every call: ~30-75 µs per call. The hot path instead calls
``wasmtime_func_call_unchecked`` through its own ctypes function object with pre-built arguments
(~0.7 µs) and reads guest memory through a memoryview (see ``shared/notes/wasm-hotpath.md``).

Safety rules this module relies on (enforced by its callers):

* exports are called unchecked only after their signatures were verified once (`abi.py`);
* the engine sets ``memory_may_move = False``, so a memory's base address never changes and a
  view stays valid for the part of memory it covers (re-read the size when a range exceeds it);
* views are dropped before their store is closed;
* the library is loaded as ``CDLL``: the GIL is released while wasm runs, so a spinning guest on a
  worker thread never stops the event loop or the other workers.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, addressof, byref, c_char, c_int32, c_size_t, c_uint64, c_void_p, cast

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "HOST_CALLBACK",
    "CallSlots",
    "call_unchecked",
    "error_from_ptr",
    "func_address",
    "increment_epoch",
    "memory_base_and_size",
    "memory_view",
    "set_epoch_deadline",
    "set_fuel",
    "trap_from_ptr",
]

_lib = ctypes.CDLL(str(ffi.filename))

#: ``wasmtime_func_call_unchecked(ctx, func, args_and_results, len, trap_out) -> error*``
call_unchecked = _lib.wasmtime_func_call_unchecked
call_unchecked.restype = c_void_p
call_unchecked.argtypes = None  # type: ignore[assignment]

#: ``wasmtime_context_set_epoch_deadline(ctx, ticks)``
set_epoch_deadline = _lib.wasmtime_context_set_epoch_deadline
set_epoch_deadline.restype = None
set_epoch_deadline.argtypes = None  # type: ignore[assignment]

#: ``wasmtime_context_set_fuel(ctx, fuel) -> error*``
set_fuel = _lib.wasmtime_context_set_fuel
set_fuel.restype = c_void_p
set_fuel.argtypes = None  # type: ignore[assignment]

_increment_epoch = _lib.wasmtime_engine_increment_epoch
_increment_epoch.restype = None
_increment_epoch.argtypes = [c_void_p]

#: The raw host callback type: ``(env, caller, args_and_results, n) -> wasm_trap_t*``.
#: Arguments are read as i32 slots with a 16-byte stride: slot k's low i32 is ``ar[4 * k]``.
HOST_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_int32), c_size_t)


def increment_epoch(engine: wasmtime.Engine) -> None:
    """Advance the engine's epoch by one tick (thread-safe; called by the ticker thread)."""
    _increment_epoch(cast(engine.ptr(), c_void_p))


def func_address(func: wasmtime.Func) -> c_void_p:
    """The address of a `Func`'s ``wasmtime_func_t``; the caller keeps ``func`` alive."""
    return c_void_p(addressof(func._func))


class CallSlots:
    """One worker's argument/result buffer and trap slot for unchecked calls.

    A worker thread owns exactly one; ``iv[4 * k]`` is slot k's i32. Not thread-safe by design.
    """

    __slots__ = ("args", "args_v", "iv", "trap", "trap_v", "two")

    def __init__(self) -> None:
        self.args = (ffi.wasmtime_val_raw_t * 3)()
        self.iv = memoryview(self.args).cast("B").cast("i")
        self.trap = c_void_p()
        self.args_v = c_void_p(addressof(self.args))
        self.trap_v = c_void_p(addressof(self.trap))
        self.two = c_size_t(2)


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
