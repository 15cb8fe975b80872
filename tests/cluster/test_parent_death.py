"""A ``kill -9`` of the node (no cleanup runs) still stops its nats-server child."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.nodeproc import free_port

from .conftest import alive

_NODE = """
import asyncio, sys
from pathlib import Path
from caxton.cluster import NatsServer
from caxton.config.schema import Address, CoordinationConfig

async def main() -> None:
    config = CoordinationConfig(bind_addr=Address("127.0.0.1", int(sys.argv[2])))
    async with NatsServer(config, Path(sys.argv[1])) as server:
        print(server.pid, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_the_child_dies_within_a_second_of_its_parent(
    tmp_path: Path, leftover_pids: list[int]
) -> None:
    script = tmp_path / "node.py"
    script.write_text(_NODE, encoding="utf-8")
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(tmp_path / "data"),
        str(free_port()),
        stdout=asyncio.subprocess.PIPE,
    )
    leftover_pids.append(parent.pid)
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 20)
        child = int(line)
        leftover_pids.append(child)
        assert alive(child)
        parent.kill()
        await parent.wait()
        deadline = time.monotonic() + 1.0
        while alive(child) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a pid
            await asyncio.sleep(0.01)
        assert not alive(child), "nats-server outlived its parent by more than 1 s"
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
