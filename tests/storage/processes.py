"""Start `writer_process.py` in a child process and read what it acknowledges."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("writer_process.py")


def start(mode: str, state_path: Path) -> subprocess.Popen[str]:
    """Start the child and return once it printed ``ready`` (its store is open)."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child did not start: {line!r} {err}")
    return proc


def read_acks(proc: subprocess.Popen[str], count: int) -> list[int]:
    """Read ``count`` acknowledged key numbers from a ``write`` child."""
    assert proc.stdout is not None
    return [int(proc.stdout.readline()) for _ in range(count)]
