"""The one boundary where wasmtime's exceptions become Caxton's (`map_wasm_errors`).

Most specific first: deadline (epoch interrupt), out of fuel, stack overflow (the engine's wasm
stack, or the agent's own stack in linear memory running below address 0), a memory-limit hit
(the guest trapped while its memory was close to the store limit, typically after
``memory.grow`` returned -1), a WASI exit, any other trap. Nothing above this module catches
wasmtime errors.

A failure keeps the whole cause, not wasmtime's first line ("error while executing at wasm
backtrace:"): the message names the trap ("wasm trap: wasm `unreachable` instruction
executed") and what the agent logged at level error while it ran (a Rust panic's text, an
AssemblyScript abort), and the details keep ``trap_code`` and the wasm ``backtrace``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import wasmtime

from caxton.errors import AgentFailure

__all__ = ["describe", "failure_from", "map_wasm_errors"]

_PAGE = 64 * 1024
#: Backtrace frames kept (a runaway recursion repeats one frame).
MAX_FRAMES = 32
#: A backtrace at least this deep, mostly one frame, is a runaway recursion.
RECURSION_FRAMES = 16
_FAULT = re.compile(r"memory fault at wasm address (0x[0-9a-f]+)")
_BY_CODE = {
    wasmtime.TrapCode.INTERRUPT: ("deadline", "the execution deadline passed"),
    wasmtime.TrapCode.OUT_OF_FUEL: ("out_of_fuel", "the message ran out of fuel"),
    wasmtime.TrapCode.STACK_OVERFLOW: ("stack_overflow", "wasm stack overflow"),
}


def _sections(text: str) -> tuple[list[str], list[str]]:
    """wasmtime's error text split into (backtrace frames, causes), each line stripped."""
    frames: list[str] = []
    causes: list[str] = []
    part = "head"
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith("wasm backtrace:"):
            part = "frames"
        elif stripped == "Caused by:":
            part = "causes"
        elif stripped and part == "frames":
            frames.append(" ".join(stripped.split()))
        elif stripped and part == "causes":
            causes.append(re.sub(r"^\d+: ", "", stripped))
        elif stripped and part == "head":
            causes.append(stripped)
    if len(frames) > MAX_FRAMES:
        frames = [*frames[:MAX_FRAMES], f"... {len(frames) - MAX_FRAMES} more frames"]
    return frames, causes


def _stack_ran_out(causes: list[str], frames: list[str]) -> bool:
    """An out-of-bounds access that is a stack in linear memory (C, Rust) running below 0.

    wasmtime names the faulting address only in some configurations (just below 4 GiB when
    the stack pointer wrapped); otherwise the sign is a runaway recursion: one frame repeated
    over most of a deep backtrace.
    """
    for cause in causes:
        found = _FAULT.search(cause)
        if found is not None:
            return int(found.group(1), 16) >= (1 << 32) - _PAGE
    if len(frames) < RECURSION_FRAMES:
        return False
    places = Counter(frame.split(" ", 1)[-1] for frame in frames)
    return places.most_common(1)[0][1] * 2 >= len(frames)


def failure_from(
    exc: BaseException,
    *,
    at_memory_limit: bool = False,
    what: str = "handling the message",
    logged: str | None = None,
) -> AgentFailure:
    """Translate a wasmtime exception raised while running guest code into `AgentFailure`.

    ``logged`` is the last line the agent logged at level error during the call (a panic's
    text): it is added to the message and kept in the details as ``log``.
    """
    if isinstance(exc, AgentFailure):
        return exc
    if isinstance(exc, wasmtime.ExitTrap):
        return AgentFailure(
            f"{what}: the agent exited with code {exc.code}",
            cause="exit",
            details={"exit_code": exc.code},
        )
    frames, causes = _sections(str(exc))
    text = "; ".join(causes) or type(exc).__name__
    details: dict[str, object] = {"trap": text}
    if frames:
        details["backtrace"] = frames
    said = ""
    if logged:
        details["log"] = logged
        said = f"; the agent logged: {logged}"
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        if code is not None:
            details["trap_code"] = code.name.lower()
        if code in _BY_CODE:
            cause, reason = _BY_CODE[code]
            return AgentFailure(f"{what}: {reason} ({text}){said}", cause=cause, details=details)
        if code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS and _stack_ran_out(causes, frames):
            reason = "the agent's stack overflowed (its stack in linear memory ran out"
            return AgentFailure(
                f"{what}: {reason}: {text}; build it with a bigger stack size){said}",
                cause="stack_overflow",
                details=details,
            )
        if at_memory_limit:
            return AgentFailure(
                f"{what}: trapped at the memory limit ({text}){said}",
                cause="memory_limit",
                details=details,
            )
        return AgentFailure(f"{what}: trap: {text}{said}", cause="trap", details=details)
    if isinstance(exc, wasmtime.WasmtimeError):
        lowered = text.lower()
        if "memory" in lowered and ("limit" in lowered or "exceed" in lowered):
            return AgentFailure(f"{what}: {text}", cause="memory_limit")
        if "interrupt" in lowered:
            return AgentFailure(f"{what}: the execution deadline passed", cause="deadline")
        details["error"] = details.pop("trap")
        return AgentFailure(f"{what}: {text}{said}", cause="trap", details=details)
    raise exc


def describe(failure: AgentFailure) -> str:
    """``cause: message``, then the wasm backtrace if there is one (an agent's last error)."""
    text = f"{failure.cause}: {failure.message}"
    frames = failure.details.get("backtrace")
    if isinstance(frames, list) and frames:
        text += "\nwasm backtrace:\n" + "\n".join(f"  {frame}" for frame in frames)
    return text


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
