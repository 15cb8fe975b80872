"""A node-like process for the kill -9 test: submits to ``recorder`` until killed.

    python -m tests.messaging.loadproc STATE_DB

Prints ``ready`` once the agent runs, then one accepted message_id per line, each printed
only after `Messaging.submit` returned (the message is committed). Never exits by itself.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.messaging.conftest import Stack


async def main(path: Path) -> None:
    async with Stack(path) as stack:
        await stack.deploy("recorder")
        print("ready", flush=True)

        async def client(i: int) -> None:
            k = 0
            while True:
                body = {"receiver": "recorder", "performative": "inform", "content": k}
                try:
                    accepted = await stack.messaging.submit(body, client=f"load{i}")
                except Exception:  # backpressure: try again
                    await asyncio.sleep(0.01)
                    continue
                print(accepted.message_id, flush=True)
                k += 1

        await asyncio.gather(*(client(i) for i in range(8)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
