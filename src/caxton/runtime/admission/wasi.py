"""The WASI preview 1 functions an agent may import, with their core WebAssembly signatures.

Module ``wasi_snapshot_preview1`` as wasi-libc and wasmtime's preview 1 implementation define it
(the ``witx`` of the snapshot, lowered to core types: pointers, sizes, handles, flags and enums
are ``i32``; 64-bit quantities — timestamps, file sizes and offsets, rights — are ``i64``).
Every function returns an ``errno`` as ``i32`` except ``proc_exit``, which does not return.

The table is what `caxton.runtime.admission.validate` checks imports against: a name that is
not here, or a signature that differs, is refused at deploy time instead of failing later at
instantiation.
A test links a module importing every entry against wasmtime's own WASI, so the table cannot
drift from what the runtime really provides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["WASI_MODULE", "WASI_PREVIEW1", "Signature"]

#: The import module name of WASI preview 1.
WASI_MODULE = "wasi_snapshot_preview1"


@dataclass(frozen=True, slots=True)
class Signature:
    """A core WebAssembly function type, with value types spelled as in WAT (``"i32"``)."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        """``(i32, i32) -> i32``; no results print as ``()``."""
        results = ", ".join(self.results)
        if len(self.results) != 1:
            results = f"({results})"
        return f"({', '.join(self.params)}) -> {results}"


def _errno(*params: str) -> Signature:
    """A preview 1 function: the given parameters, one ``errno`` result."""
    return Signature(params, ("i32",))


_I, _L = "i32", "i64"

#: Every preview 1 function name mapped to its signature (read-only).
WASI_PREVIEW1: Mapping[str, Signature] = MappingProxyType(
    {
        "args_get": _errno(_I, _I),
        "args_sizes_get": _errno(_I, _I),
        "environ_get": _errno(_I, _I),
        "environ_sizes_get": _errno(_I, _I),
        "clock_res_get": _errno(_I, _I),
        "clock_time_get": _errno(_I, _L, _I),
        "fd_advise": _errno(_I, _L, _L, _I),
        "fd_allocate": _errno(_I, _L, _L),
        "fd_close": _errno(_I),
        "fd_datasync": _errno(_I),
        "fd_fdstat_get": _errno(_I, _I),
        "fd_fdstat_set_flags": _errno(_I, _I),
        "fd_fdstat_set_rights": _errno(_I, _L, _L),
        "fd_filestat_get": _errno(_I, _I),
        "fd_filestat_set_size": _errno(_I, _L),
        "fd_filestat_set_times": _errno(_I, _L, _L, _I),
        "fd_pread": _errno(_I, _I, _I, _L, _I),
        "fd_prestat_get": _errno(_I, _I),
        "fd_prestat_dir_name": _errno(_I, _I, _I),
        "fd_pwrite": _errno(_I, _I, _I, _L, _I),
        "fd_read": _errno(_I, _I, _I, _I),
        "fd_readdir": _errno(_I, _I, _I, _L, _I),
        "fd_renumber": _errno(_I, _I),
        "fd_seek": _errno(_I, _L, _I, _I),
        "fd_sync": _errno(_I),
        "fd_tell": _errno(_I, _I),
        "fd_write": _errno(_I, _I, _I, _I),
        "path_create_directory": _errno(_I, _I, _I),
        "path_filestat_get": _errno(_I, _I, _I, _I, _I),
        "path_filestat_set_times": _errno(_I, _I, _I, _I, _L, _L, _I),
        "path_link": _errno(_I, _I, _I, _I, _I, _I, _I),
        "path_open": _errno(_I, _I, _I, _I, _I, _L, _L, _I, _I),
        "path_readlink": _errno(_I, _I, _I, _I, _I, _I),
        "path_remove_directory": _errno(_I, _I, _I),
        "path_rename": _errno(_I, _I, _I, _I, _I, _I),
        "path_symlink": _errno(_I, _I, _I, _I, _I),
        "path_unlink_file": _errno(_I, _I, _I),
        "poll_oneoff": _errno(_I, _I, _I, _I),
        "proc_exit": Signature((_I,), ()),
        "proc_raise": _errno(_I),
        "sched_yield": _errno(),
        "random_get": _errno(_I, _I),
        "sock_accept": _errno(_I, _I, _I),
        "sock_recv": _errno(_I, _I, _I, _I, _I, _I),
        "sock_send": _errno(_I, _I, _I, _I, _I),
        "sock_shutdown": _errno(_I, _I),
    }
)
