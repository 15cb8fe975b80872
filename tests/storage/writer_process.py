"""A stand-in node for the multi-process tests, run as ``python writer_process.py MODE STATE``.

``hold``:  open the store, print ``ready``, and keep it open until stdin closes.
``write``: open the store, create agent ``w``, print ``ready``, then write kv keys 0, 1, 2, ...
           (8-byte big-endian) with up to 64 writes in flight, printing each key's number only
           after its write is acknowledged (committed). Runs until killed.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from concurrent.futures import Future
from pathlib import Path

from caxton.storage import AgentRecord, Storage


def main(mode: str, path: Path) -> None:
    storage = Storage.open_sync(path)
    if mode == "hold":
        print("ready", flush=True)
        sys.stdin.read()
        storage.close()
        return
    if storage.agents.get_sync("w") is None:
        asyncio.run(storage.agents.create(AgentRecord(name="w"), b"\0asm"))
    print("ready", flush=True)
    in_flight: collections.deque[tuple[int, Future[None]]] = collections.deque()
    i = 0
    while True:
        while len(in_flight) < 64:
            in_flight.append((i, storage.kv.set_nowait("w", i.to_bytes(8, "big"), b"x" * 100)))
            i += 1
        done, future = in_flight.popleft()
        future.result()
        print(done, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
