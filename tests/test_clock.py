"""`caxton.clock`: the one clock type, and the rule that every injected clock is one."""

from __future__ import annotations

import ast
import time
from datetime import datetime
from pathlib import Path

import caxton
from caxton.clock import SYSTEM_CLOCK, Clock, ManualClock

SOURCE = Path(caxton.__file__).parent
#: Parameter names that inject time.
CLOCK_PARAMETERS = frozenset({"clock", "monotonic", "wall"})


def test_the_system_clock_reads_the_machine_clocks() -> None:
    clock: Clock = SYSTEM_CLOCK
    assert clock.monotonic is time.monotonic  # no Python frame on the hot path
    assert abs(clock.wall() - time.time()) < 5.0
    now = clock.now()
    assert now.tzinfo is not None
    assert abs(now.timestamp() - time.time()) < 5.0


def test_a_manual_clock_moves_only_when_told() -> None:
    clock: Clock = ManualClock(50.0, wall=datetime(2024, 5, 1, 23, 30))
    assert isinstance(clock, ManualClock)
    assert (clock.monotonic(), clock.monotonic()) == (50.0, 50.0)
    clock.advance(10, minutes=1)
    assert clock.monotonic() == 120.0
    assert clock.now().replace(tzinfo=None) == datetime(2024, 5, 1, 23, 31, 10)
    clock.set_wall(0.0)  # a jump of the wall clock leaves the monotonic one alone
    assert (clock.monotonic(), clock.wall()) == (120.0, 0.0)


def _clock_parameters() -> list[str]:
    """``file:line name: annotation`` of every parameter that injects time without `Clock`."""
    found = []
    for path in SOURCE.rglob("*.py"):
        if path == SOURCE / "clock.py":  # the clocks themselves take readings, not clocks
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if arg.arg not in CLOCK_PARAMETERS:
                    continue
                annotation = ast.unparse(arg.annotation) if arg.annotation else "(none)"
                if annotation != "Clock":
                    where = f"{path.relative_to(SOURCE)}:{node.lineno}"
                    found.append(f"{where} {arg.arg}: {annotation}")
    return found


def test_every_injected_clock_is_a_clock() -> None:
    """No ``Callable[[], float]``, ``Clock | None`` or datetime callable: one shape."""
    wrong = _clock_parameters()
    assert not wrong, "inject time as caxton.clock.Clock:\n" + "\n".join(wrong)
