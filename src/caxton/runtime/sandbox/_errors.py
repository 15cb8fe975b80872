"""The one boundary where wasmtime's exceptions become Caxton's (`map_wasm_errors`).

Most specific first: deadline (epoch interrupt), out of fuel, stack overflow, a memory-limit hit
(the guest trapped while its memory was close to the store limit, typically after
``memory.grow`` returned -1), a WASI exit, any other trap. Nothing above this module catches
wasmtime errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import wasmtime

from caxton.errors import AgentFailure

__all__ = ["failure_from", "map_wasm_errors"]

_PAGE = 64 * 1024
_BY_CODE = {
    wasmtime.TrapCode.INTERRUPT: ("deadline", "the execution deadline passed"),
    wasmtime.TrapCode.OUT_OF_FUEL: ("out_of_fuel", "the message ran out of fuel"),
    wasmtime.TrapCode.STACK_OVERFLOW: ("stack_overflow", "wasm stack overflow"),
}


def failure_from(
    exc: BaseException, *, at_memory_limit: bool = False, what: str = "handling the message"
) -> AgentFailure:
    """Translate a wasmtime exception raised while running guest code into `AgentFailure`."""
    if isinstance(exc, AgentFailure):
        return exc
    if isinstance(exc, wasmtime.ExitTrap):
        return AgentFailure(
            f"{what}: the agent exited with code {exc.code}",
            cause="exit",
            details={"exit_code": exc.code},
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        if code in _BY_CODE:
            cause, reason = _BY_CODE[code]
            return AgentFailure(f"{what}: {reason}", cause=cause, details={"trap": text})
        if at_memory_limit:
            return AgentFailure(
                f"{what}: trapped at the memory limit", cause="memory_limit", details={"trap": text}
            )
        return AgentFailure(f"{what}: trap: {text}", cause="trap", details={"trap": text})
    if isinstance(exc, wasmtime.WasmtimeError):
        lowered = text.lower()
        if "memory" in lowered and ("limit" in lowered or "exceed" in lowered):
            return AgentFailure(f"{what}: {text}", cause="memory_limit")
        if "interrupt" in lowered:
            return AgentFailure(f"{what}: the execution deadline passed", cause="deadline")
        return AgentFailure(f"{what}: {text}", cause="trap", details={"error": text})
    raise exc


@contextmanager
def map_wasm_errors(
    *, memory_near_limit: Callable[[], bool] = lambda: False, what: str = "handling the message"
) -> Iterator[None]:
    """Run guest code; re-raise wasmtime traps and errors as `AgentFailure` (``from`` them)."""
    try:
        yield
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        near = isinstance(exc, wasmtime.Trap) and memory_near_limit()
        raise failure_from(exc, at_memory_limit=near, what=what) from exc


def near_limit(size: int, limit: int) -> bool:
    """True when a memory of ``size`` bytes is within 1/8 of ``limit`` (at least one page).

    wasmtime does not report a refused ``memory.grow`` (the guest just sees -1), so a trap in
    a memory this close to its cap is attributed to the cap: allocators grow in chunks (a
    refused 1 MiB step leaves the memory up to 1 MiB short of the limit).
    """
    return size + max(_PAGE, limit // 8) > limit
