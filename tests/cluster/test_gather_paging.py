"""Paging through a gathered conversation or dead-letter list sees every item of every node,
however deep the page, though a node's answer (and a read of the local part) carries at most
`gather.MAX_ITEMS` items: made small here so that each node's part is several times that."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest

from caxton.cluster import gather
from caxton.cluster.gather import Gather
from caxton.node import Node
from tests.support import eventually

#: Items per answer in this test (each node keeps PER_NODE, several answers' worth).
CAP = 7
PER_NODE = 30


def gather_of(node: Node) -> Gather:
    assert node.cluster_messages is not None
    return node.cluster_messages.gather


async def fill(a: Node, b: Node) -> None:
    """PER_NODE messages accepted on each node for nobody, in turns (so their times
    interleave): each is kept in conversation "c" and dead-lettered on its node."""
    for i in range(PER_NODE):
        for node in (a, b):
            message = {"receiver": "nobody", "performative": "inform", "conversation_id": "c"}
            await node.messaging.submit(message | {"content": i}, client="tester")
            await asyncio.sleep(0.002)  # distinct creation times (milliseconds)

    async def all_dead_lettered() -> bool:
        counts = [(await n.messaging.dead_letters(offset=0, limit=1))[1] for n in (a, b)]
        return counts == [PER_NODE, PER_NODE]

    await eventually(all_dead_lettered, 10, what="every message dead-lettered")


async def paged(read: Any, total: int, limit: int) -> list[tuple[str, Any]]:
    """Every page of ``limit`` items from offset 0 to past the end, concatenated."""
    seen: list[tuple[str, Any]] = []
    for offset in range(0, total + limit, limit):
        page = await read(offset, limit)
        assert page.missing == []
        assert page.total == total
        assert len(page.items) == min(limit, max(0, total - offset)), offset
        seen += [(item["node"], item["message_id"]) for item in page.items]
    return seen


async def test_pages_past_the_per_answer_cap_see_every_item(
    node_pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = node_pair
    await fill(a, b)
    monkeypatch.setattr(gather, "MAX_ITEMS", CAP)
    total = 2 * PER_NODE
    # What a merge of both nodes' whole parts gives (each node read here without a cap).
    own = [(await n.messaging.conversation("c", offset=0, limit=1000))[0] for n in (a, b)]
    messages = [
        (node, m["message_id"])
        for node, m in heapq.merge(
            *[[(name, m) for m in part] for name, part in zip("ab", own, strict=True)],
            key=lambda pair: pair[1]["created_at"],
        )
    ]
    assert len(set(messages)) == total
    letters = [(await n.messaging.dead_letters(offset=0, limit=1000))[0] for n in (a, b)]
    dead = [
        (node, d.message_id)
        for node, d in heapq.merge(
            *[[(name, d) for d in part] for name, part in zip("ab", letters, strict=True)],
            key=lambda pair: pair[1].created_at,
        )
    ]
    assert [n for n, _ in messages].count("b") == PER_NODE

    remote = gather_of(a)
    for limit in (5, CAP, 2 * CAP + 3, total):
        conversation = await paged(lambda o, n: remote.conversation("c", o, n), total, limit)
        assert conversation == messages, limit
        assert await paged(remote.dead_letters, total, limit) == dead, limit
    # One deep page on its own.
    deep = await remote.conversation("c", total - 4, 4)
    assert [(m["node"], m["message_id"]) for m in deep.items] == messages[-4:]


async def test_a_member_that_stops_answering_half_way_is_left_out_and_named(
    node_pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = node_pair
    await fill(a, b)
    monkeypatch.setattr(gather, "MAX_ITEMS", CAP)
    answered = 0
    answer = gather_of(b).answer

    async def then_silent(payload: bytes) -> bytes:
        nonlocal answered
        answered += 1
        if answered > 1:
            await asyncio.sleep(5)
        return await answer(payload)

    gather_of(b).answer = then_silent  # type: ignore[method-assign]
    gather_of(a).timeout = 0.3
    page = await gather_of(a).conversation("c", 2 * CAP, 2 * CAP)
    assert answered >= 2  # b's first answer was not enough
    assert page.missing == ["b"]
    assert page.total == PER_NODE
    own, _ = await a.messaging.conversation("c", offset=2 * CAP, limit=2 * CAP)
    assert [m["message_id"] for m in page.items] == [m["message_id"] for m in own]
    assert {m["node"] for m in page.items} == {"a"}
