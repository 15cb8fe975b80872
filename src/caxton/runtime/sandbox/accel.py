"""The optional C hot path (`_accel.c`), loaded once; `ACCEL` is None when it is not there.

The extension is compiled when Caxton is installed on a machine with a C compiler and the
Python headers (`hatch_build.py`). Without it the same work goes through ctypes (`_ffi.Reactor`,
`host.ctypes_callback`), about 15% more instructions per message. ``CAXTON_ACCEL=0`` in the
environment turns it off (to compare, or to rule it out when troubleshooting).
"""

from __future__ import annotations

import ctypes
import logging
import os
from types import ModuleType

from wasmtime import _ffi as ffi

from caxton.runtime.sandbox import _ffi
from caxton.wire import trace as wire_trace

__all__ = ["ACCEL", "describe", "load"]

_log = logging.getLogger("caxton.runtime")


def load() -> ModuleType | None:
    """Import and set up the extension; None if disabled, not built or not usable."""
    if os.environ.get("CAXTON_ACCEL", "1") == "0":
        return None
    try:
        from caxton.runtime.sandbox import _accel
    except ImportError:
        return None
    try:
        if (_accel.FAILED, _accel.BAD_POINTER) != (_ffi.FAILED, _ffi.BAD_POINTER):
            raise RuntimeError("result codes differ from caxton.runtime.sandbox._ffi")
        if getattr(_accel, "TRACE_LAYOUT", None) != wire_trace.TRACE_LAYOUT:
            raise RuntimeError("its traced-message layout differs from caxton.wire.trace")
        _accel.setup(
            _ffi.address_of(_ffi.call_unchecked),
            _ffi.address_of(_ffi.memory_data_size),
            ctypes.sizeof(ffi.wasmtime_val_raw_t),
            _ffi.address_of(_ffi.set_epoch_deadline),
        )
    # Built against another layout, or an older build of `_accel.c` (another `setup`, no
    # `TraceContext`): the ctypes path still works.
    except (RuntimeError, TypeError) as exc:
        _log.warning("the C hot path is not used: %s", exc)
        return None
    return _accel


def describe() -> str:
    """``"c"`` or ``"ctypes"``: which hot path this process uses (for stats and logs)."""
    return "ctypes" if ACCEL is None else "c"


ACCEL = load()
