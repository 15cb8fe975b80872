"""WASI file writes of agents with a granted directory, checked against `temp_storage_limit`.

wasmtime's WASI (preview 1) has no quota of its own, and its functions cannot be called from
the host directly (they read the *calling instance's* memory). So agents with a grant are
linked against a linker where the calls that can make files bigger (``fd_write``,
``fd_pwrite``, ``fd_allocate``, ``fd_filestat_set_size``) are shadowed by host functions that:

1. read the request from the agent's memory and ask the node's `TempStorage` for the bytes
   (a refusal answers WASI's ``nospc``, 51, as a full disk would: ``write`` fails with
   ``ENOSPC`` in the agent);
2. forward the call through a tiny *relay* module instantiated in the agent's own store (so
   it shares the agent's WASI context, its open files): the data is copied into the relay's
   memory and the relay calls the real WASI function, which reads it from there;
3. copy the results back and settle the account with what was written.

``fd_close`` and ``fd_renumber`` are shadowed too, so that descriptors 0-2 always stay stdin,
stdout and stderr (which do not count): closing one is a no-op and renumbering onto one is
refused with ``notsup``; otherwise an agent could move a file there and write past the limit.

Only agents deployed with a grant use this linker; the others, and every message path, are
unaffected.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from ctypes import c_void_p, cast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import _ffi as ffi

from caxton.runtime.sandbox._ffi import HOST_CALLBACK, define_unchecked
from caxton.runtime.sandbox.quota import TempStorage

if TYPE_CHECKING:
    from caxton.runtime.sandbox.instance import Instance

__all__ = ["RELAY_WAT", "attach", "define_quota_functions", "detach"]

_log = logging.getLogger("caxton.runtime")
_M = 0xFFFFFFFF

_WASI = "wasi_snapshot_preview1"
ERRNO_BADF = 8
ERRNO_FAULT = 21
ERRNO_INVAL = 28
ERRNO_IO = 29
ERRNO_NOSPC = 51
ERRNO_NOTSUP = 58

#: Bytes the relay copies per forwarded write (its memory stays one page).
_CHUNK = 60 * 1024
_DATA = 1024  # where the relay's buffer starts (below: iovec and result slots)

RELAY_WAT = f"""
(module
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "{_WASI}" "fd_filestat_get" (func $stat (param i32 i32) (result i32)))
  (import "{_WASI}" "fd_filestat_set_size" (func $size (param i32 i64) (result i32)))
  (import "{_WASI}" "fd_allocate" (func $alloc (param i32 i64 i64) (result i32)))
  (import "{_WASI}" "fd_close" (func $close (param i32) (result i32)))
  (import "{_WASI}" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; one iovec at 0 -> (_DATA, len); the count of bytes written lands at 8
  (func (export "write") (param $fd i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (i32.const {_DATA}))
    (i32.store (i32.const 4) (local.get $len))
    (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func (export "pwrite") (param $fd i32) (param $len i32) (param $at i64) (result i32)
    (i32.store (i32.const 0) (i32.const {_DATA}))
    (i32.store (i32.const 4) (local.get $len))
    (call $pwrite (local.get $fd) (i32.const 0) (i32.const 1) (local.get $at) (i32.const 8)))
  ;; the filestat lands at 64; its size field at 96
  (func (export "stat") (param $fd i32) (result i32)
    (call $stat (local.get $fd) (i32.const 64)))
  (func (export "set_size") (param $fd i32) (param $n i64) (result i32)
    (call $size (local.get $fd) (local.get $n)))
  (func (export "allocate") (param $fd i32) (param $at i64) (param $n i64) (result i32)
    (call $alloc (local.get $fd) (local.get $at) (local.get $n)))
  (func (export "close") (param $fd i32) (result i32)
    (call $close (local.get $fd)))
  (func (export "renumber") (param $from i32) (param $to i32) (result i32)
    (call $renumber (local.get $from) (local.get $to))))
"""


@dataclass(slots=True)
class _Granted:
    """One granted agent instance: its store, memory, relay and the node's account."""

    inst: Instance
    relay: dict[str, Any]
    memory: wasmtime.Memory
    quota: TempStorage

    def call(self, name: str, *args: int) -> int:
        result = self.relay[name](self.inst.store, *args)
        return int(result)

    def stat_size(self, fd: int) -> int | None:
        if self.call("stat", fd) != 0:
            return None
        raw = self.memory.read(self.inst.store, 96, 104)
        return int.from_bytes(raw, "little")

    def write(self, fd: int, data: bytes, at: int | None) -> tuple[int, int]:
        """Forward a write through the relay: ``(errno, bytes written)``."""
        written = 0
        while written < len(data):
            piece = data[written : written + _CHUNK]
            self.memory.write(self.inst.store, piece, _DATA)
            if at is None:
                errno = self.call("write", fd, len(piece))
            else:
                errno = self.call("pwrite", fd, len(piece), at + written)
            if errno:
                return (0, written) if written else (errno, 0)
            n = int.from_bytes(self.memory.read(self.inst.store, 8, 12), "little")
            written += n
            if n < len(piece):
                break
        return 0, written


#: Registered instances by store context address (a host call's caller has the same one).
_granted: dict[int, _Granted] = {}

_caller_context = ctypes.CDLL(str(ffi.filename)).wasmtime_caller_context
_caller_context.restype = c_void_p
_caller_context.argtypes = [c_void_p]


def attach(inst: Instance, relay_pre: wasmtime.InstancePre, quota: TempStorage) -> None:
    """Give a granted agent's fresh instance its relay (in the same store) and register it."""
    relay = relay_pre.instantiate(inst.store)
    exports = relay.exports(inst.store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    funcs = {name: exports[name] for name in ("write", "pwrite", "stat", "set_size")}
    funcs.update({name: exports[name] for name in ("allocate", "close", "renumber")})
    _granted[inst.ctx.value or 0] = _Granted(inst, funcs, memory, quota)


def detach(inst: Instance) -> None:
    """Forget a granted instance (before its store is closed)."""
    _granted.pop(inst.ctx.value or 0, None)


def _u32(view: memoryview, at: int) -> int:
    return int.from_bytes(view[at : at + 4], "little")


def _gather(inst: Instance, iovs: int, count: int) -> bytes | None:
    """The bytes an iovec array points at, or None if any part is outside memory."""
    if count > 1024 or not inst.covers(iovs + 8 * count):
        return None
    view = inst.view
    parts = []
    for k in range(count):
        ptr, length = _u32(view, iovs + 8 * k), _u32(view, iovs + 8 * k + 4)
        if not inst.covers(ptr + length):
            return None
        parts.append(bytes(inst.view[ptr : ptr + length]))  # `covers` may renew the view
    return b"".join(parts)


def _write(g: _Granted, ar: Any, positioned: bool) -> int:
    """fd_write(fd, iovs, iovs_len, nwritten) or fd_pwrite(fd, iovs, iovs_len, at, nwritten)."""
    fd, iovs, count = ar[0], ar[4] & _M, ar[8] & _M
    at = (ar[12] & _M) | (ar[13] << 32) if positioned else None
    out = (ar[16] if positioned else ar[12]) & _M
    data = _gather(g.inst, iovs, count)
    if data is None or not g.inst.covers(out + 4):
        return ERRNO_FAULT
    counted = fd > 2  # 0-2 always stay stdio (see `_close`, `_renumber`)
    if counted and not g.quota.reserve(len(data)):
        return ERRNO_NOSPC
    errno, written = g.write(fd, data, at)
    if counted:
        g.quota.settle(len(data), written)
    g.inst.view[out : out + 4] = written.to_bytes(4, "little")
    return errno


def _grow_to(g: _Granted, fd: int, end: int, forward: Any) -> int:
    """Reserve what making ``fd`` ``end`` bytes long adds, then ``forward()``."""
    size = g.stat_size(fd)
    if size is None:
        return ERRNO_BADF
    growth = max(0, end - size)
    if not g.quota.reserve(growth):
        return ERRNO_NOSPC
    errno = int(forward())
    g.quota.settle(growth, 0 if errno else growth)
    return errno


def _set_size(g: _Granted, ar: Any) -> int:
    # fd_filestat_set_size(fd, size: i64)
    fd, size = ar[0], (ar[4] & _M) | (ar[5] << 32)
    if size < 0:
        return ERRNO_INVAL
    return _grow_to(g, fd, size, lambda: g.call("set_size", fd, size))


def _allocate(g: _Granted, ar: Any) -> int:
    # fd_allocate(fd, offset: i64, len: i64)
    fd, at, n = ar[0], (ar[4] & _M) | (ar[5] << 32), (ar[8] & _M) | (ar[9] << 32)
    if at < 0 or n < 0:
        return ERRNO_INVAL
    return _grow_to(g, fd, at + n, lambda: g.call("allocate", fd, at, n))


def _close(g: _Granted, ar: Any) -> int:
    # fd_close(fd): stdio stays open (a no-op), so a file can never take its number
    fd = ar[0]
    return 0 if 0 <= fd <= 2 else g.call("close", fd)


def _renumber(g: _Granted, ar: Any) -> int:
    # fd_renumber(from, to): nothing may be moved onto (or off) stdio
    fd, to = ar[0], ar[4]
    if 0 <= fd <= 2 or 0 <= to <= 2:
        return ERRNO_NOTSUP
    return g.call("renumber", fd, to)


def _raw(fn: Callable[[_Granted, Any], int]) -> Any:
    """A raw host callback answering ``fn(granted, ar)``'s errno; never raises into wasm."""

    def callback(env: Any, caller: Any, ar: Any, nar: int) -> int:
        try:
            g = _granted.get(_caller_context(caller) or 0)
            ar[0] = ERRNO_IO if g is None else fn(g, ar)
        except Exception:
            _log.exception("a file call of a granted agent failed")
            ar[0] = ERRNO_IO
        return 0

    return HOST_CALLBACK(callback)


_I32, _I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
_SHADOWS: dict[str, tuple[Callable[[_Granted, Any], int], list[wasmtime.ValType]]] = {
    "fd_write": (lambda g, ar: _write(g, ar, False), [_I32, _I32, _I32, _I32]),
    "fd_pwrite": (lambda g, ar: _write(g, ar, True), [_I32, _I32, _I32, _I64, _I32]),
    "fd_filestat_set_size": (_set_size, [_I32, _I64]),
    "fd_allocate": (_allocate, [_I32, _I64, _I64]),
    "fd_close": (_close, [_I32]),
    "fd_renumber": (_renumber, [_I32, _I32]),
}
# The callback objects must outlive every linker that uses them.
_KEEP_ALIVE: dict[str, Any] = {}


def define_quota_functions(linker: wasmtime.Linker) -> None:
    """Shadow the WASI calls that grow files on ``linker`` (which has WASI defined)."""
    linker.allow_shadowing = True
    for name, (fn, params) in _SHADOWS.items():
        callback = _KEEP_ALIVE.get(name)
        if callback is None:
            callback = _KEEP_ALIVE[name] = _raw(fn)
        raw = cast(callback, ffi.wasmtime_func_unchecked_callback_t)
        define_unchecked(linker, _WASI, name, wasmtime.FuncType(params, [_I32]), raw)
    linker.allow_shadowing = False
