"""Reading and writing an instance's saved globals as raw bits (for snapshots).

`admission.globals` exported every mutable global of a reactor at deploy time; these two
functions read them all out of a live instance and write them back into a fresh one. Values go
through the C API as raw bits (an ``f32`` is read through the union's ``i32`` member), so floats
come back bit for bit: NaN payloads and ``-0.0`` included, which a Python ``float`` would not
promise.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Mapping
from typing import cast

import wasmtime
from wasmtime import _ffi as ffi

from caxton.errors import AgentFailure
from caxton.runtime.admission.globals import SavedGlobal

__all__ = ["GlobalValue", "read_globals", "write_globals"]

#: One saved global: (index in the module, value type, raw bits as an unsigned integer).
GlobalValue = tuple[int, str, int]

# wasmtime_valkind_t of each saved type, and whether its bits live in the 32-bit member.
_KINDS = {"i32": (0, True), "i64": (1, False), "f32": (2, True), "f64": (3, False)}
_MASK32, _MASK64 = (1 << 32) - 1, (1 << 64) - 1


def _global(exports: Mapping[str, object], saved: SavedGlobal) -> wasmtime.Global:
    found = exports.get(saved.export)
    if not isinstance(found, wasmtime.Global):
        raise AgentFailure(
            f"cannot snapshot global {saved.index}: export {saved.export!r} is missing",
            cause="trap",
        )
    return found


def read_globals(
    store: wasmtime.Store, exports: Mapping[str, object], saved: Iterable[SavedGlobal]
) -> tuple[GlobalValue, ...]:
    """The current bits of every global in ``saved``, in order."""
    context = store._context()
    values: list[GlobalValue] = []
    raw = ffi.wasmtime_val_t()
    for item in saved:
        kind, narrow = _KINDS[item.type]
        ffi.wasmtime_global_get(
            context, ctypes.byref(_global(exports, item)._global), ctypes.byref(raw)
        )
        if cast(int, raw.kind) != kind:  # the stub says c_ubyte; ctypes gives an int
            raise AgentFailure(
                f"cannot snapshot global {item.index}: it is not an {item.type}", cause="trap"
            )
        bits = raw.of.i32 & _MASK32 if narrow else raw.of.i64 & _MASK64
        values.append((item.index, item.type, bits))
    return tuple(values)


def write_globals(
    store: wasmtime.Store,
    exports: Mapping[str, object],
    saved: Iterable[SavedGlobal],
    values: Iterable[GlobalValue],
) -> None:
    """Write ``values`` (from `read_globals` on an instance of the same module) back.

    Raises `AgentFailure` if a value names a global the module does not save, or another type.
    """
    by_index = {item.index: item for item in saved}
    context = store._context()
    raw = ffi.wasmtime_val_t()
    for index, type_name, bits in values:
        item = by_index.get(index)
        if item is None or item.type != type_name:
            raise AgentFailure(
                f"cannot restore global {index} ({type_name}): the module has no such global",
                cause="trap",
            )
        kind, narrow = _KINDS[type_name]
        raw.kind = ctypes.c_uint8(kind)
        if narrow:
            raw.of.i32 = bits - (1 << 32) if bits >> 31 else bits
        else:
            raw.of.i64 = bits - (1 << 64) if bits >> 63 else bits
        error = ffi.wasmtime_global_set(
            context, ctypes.byref(_global(exports, item)._global), ctypes.byref(raw)
        )
        if error:
            message = str(wasmtime.WasmtimeError._from_ptr(error))
            raise AgentFailure(f"cannot restore global {index}: {message}", cause="trap")
