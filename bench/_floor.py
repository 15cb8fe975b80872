"""The yardstick the throughput benchmarks print beside their own figure.

Two asyncio tasks ping-ponging through `asyncio.Queue` in the same process: the ratio of a
benchmark to this floor is comparable across machines (and across the fast and slow phases
of a noisy VM), which absolute messages per second are not.
"""

from __future__ import annotations

import asyncio
import statistics
import time


async def asyncio_floor(rounds: int) -> float:
    """msgs/s of two tasks ping-ponging through asyncio.Queue (2 * rounds hops)."""
    qa: asyncio.Queue[int] = asyncio.Queue()
    qb: asyncio.Queue[int] = asyncio.Queue()

    async def a() -> None:
        for i in range(rounds):
            qb.put_nowait(i)
            await qa.get()

    async def b() -> None:
        for i in range(rounds):
            await qb.get()
            qa.put_nowait(i)

    started = time.perf_counter()
    await asyncio.gather(a(), b())
    return 2 * rounds / (time.perf_counter() - started)


def summary(values: list[float]) -> dict[str, object]:
    """Best, median and every run of a list of msgs/s figures, rounded."""
    return {
        "best": round(max(values)),
        "median": round(statistics.median(values)),
        "runs": [round(x) for x in values],
    }


def compare_to_floor(agents: list[float], floor: list[float]) -> dict[str, object]:
    """The agents' runs, the interleaved floor runs and their ratios, as the benches print them."""
    ratios = [a / f for a, f in zip(agents, floor, strict=True)]
    return {
        "agents_msgs_per_s": summary(agents),
        "asyncio_queue_msgs_per_s": summary(floor),
        "ratio": {"best": round(max(ratios), 3), "median": round(statistics.median(ratios), 3)},
    }
