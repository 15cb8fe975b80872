"""At least once across a real ``kill -9``: every accepted message is handled after recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.messaging.conftest import Stack, build_c
from tests.support import ROOT, eventually

pytestmark = pytest.mark.slow


def run_and_kill(path: Path) -> list[str]:
    """Start the load process, kill -9 it mid-load; the ids it acknowledged as accepted."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.messaging.loadproc", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        accepted: list[str] = []
        while len(accepted) < 400:
            line = proc.stdout.readline()
            assert line, "the load process died"
            accepted.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return accepted + [line for line in rest.splitlines() if line.strip()]


async def test_kill_9_mid_load_loses_nothing_accepted(data_dir: Path) -> None:
    build_c(ROOT / "tests" / "messaging" / "agents" / "recorder.c")  # build before timing
    path = data_dir / "local.db"
    accepted = await asyncio.to_thread(run_and_kill, path)

    async with Stack(path) as stack:
        await stack.deploy("recorder")
        recovered = await stack.messaging.recover()

        async def all_handled() -> bool:
            kv = await stack.storage.kv.load("recorder")
            return all(mid.encode() in kv for mid in accepted)

        await eventually(all_handled, within=20)
        assert 0 <= recovered <= len(accepted)
        letters, _ = await stack.messaging.dead_letters()
        assert letters == []
