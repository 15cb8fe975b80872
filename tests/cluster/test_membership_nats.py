"""Membership over real nats-server children (3 routed servers on 127.0.0.1), in real time."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest

from caxton.cluster import MemberChange, Membership, NatsBus, NatsServer
from caxton.cluster.membership import DEAD_AFTER
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination

P = 0.2  # probe interval, seconds
#: kill -> dead is at most (DEAD_AFTER + 1) intervals; the margin is for a loaded machine.
BOUND = (DEAD_AFTER + 1) * P + 0.5


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[Membership]]:
    ports = tuple(free_port() for _ in range(3))
    async with AsyncExitStack() as stack:
        memberships = []
        for index, port in enumerate(ports):
            server = NatsServer(coordination(port, seeds=ports), tmp_path / f"node{index}")
            await stack.enter_async_context(server)
            client = await nats.connect(**server.endpoint.connect_options())
            stack.push_async_callback(client.close)
            membership = Membership(
                f"node{index}",
                (f"127.0.0.1:{8080 + index}", f"127.0.0.1:{port}"),
                NatsBus(client),
                probe_interval=P,
                agents=functools.partial(int, index * 10),
            )
            stack.push_async_callback(membership.aclose)
            memberships.append(membership)
        for membership in memberships:
            await membership.start()
        yield memberships
        for membership in memberships:  # those a test put in place too
            await membership.aclose()


def view(membership: Membership) -> dict[str, str]:
    return {m.name: m.state for m in membership.members()}


async def test_three_nodes_see_each_other_and_a_silent_one_is_dead_within_the_bound(
    cluster: list[Membership],
) -> None:
    everyone = {"node0": "alive", "node1": "alive", "node2": "alive"}

    async def all_alive() -> bool:
        return all(view(membership) == everyone for membership in cluster)

    await eventually(all_alive, within=10)
    seen = cluster[0].get("node2")
    assert seen is not None
    assert (seen.agents, seen.api) == (20, "127.0.0.1:8082")

    dead_at: dict[str, float] = {}
    for survivor in cluster[:2]:

        def on_change(change: MemberChange, name: str = survivor.name) -> None:
            if change.member.name == "node2" and change.current == "dead":
                dead_at[name] = time.monotonic()

        survivor.add_listener(on_change)
    await cluster[2].aclose()  # node2 stops beating: what others see of a kill -9
    stopped = time.monotonic()

    async def dead_everywhere() -> bool:
        return len(dead_at) == 2

    await eventually(dead_everywhere, within=BOUND + 2)
    delays = {name: at - stopped for name, at in dead_at.items()}
    assert all(delay <= BOUND for delay in delays.values()), delays
    assert all(delay > DEAD_AFTER * P - P for delay in delays.values()), delays  # not early
    assert view(cluster[0])["node1"] == "alive"

    gone = cluster[2]
    restarted = Membership(
        "node2",
        (gone.api, gone.cluster),
        gone._bus,
        probe_interval=P,
        incarnation=gone.incarnation + 1,
    )
    cluster[2] = restarted  # the fixture closes it
    await restarted.start()
    await eventually(all_alive, within=BOUND)
    again = cluster[1].get("node2")
    assert again is not None
    assert again.incarnation == gone.incarnation + 1


async def test_a_leaving_node_is_left_at_once(cluster: list[Membership]) -> None:
    async def all_alive() -> bool:
        return all(len(view(membership)) == 3 for membership in cluster)

    await eventually(all_alive, within=10)
    await cluster[1].leave()
    started = asyncio.get_running_loop().time()

    async def left_everywhere() -> bool:
        return all(view(membership)["node1"] == "left" for membership in (cluster[0], cluster[2]))

    await eventually(left_everywhere, within=2)
    assert asyncio.get_running_loop().time() - started < P  # before a single probe interval


async def test_unsubscribing_after_the_connection_closed_is_a_no_op(tmp_path: Path) -> None:
    async with NatsServer(coordination(), tmp_path) as server:
        client = await nats.connect(**server.endpoint.connect_options())
        unsubscribe = await NatsBus(client).subscribe("caxton.test", lambda subject, data: None)
        await client.close()
        await unsubscribe()
        await unsubscribe()
