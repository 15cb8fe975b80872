"""A node's part of a gathered conversation or dead-letter list that is larger than one NATS
message (1 MiB) arrives in several answers, instead of the node being reported missing."""

from __future__ import annotations

import pytest

from caxton.cluster import gather
from caxton.node import Node
from tests.support import eventually

pytestmark = pytest.mark.slow

#: Messages kept on node b: with their dead letters, well over 1 MiB of answer.
COUNT = 3000


async def test_a_part_larger_than_one_nats_message_is_gathered_in_several_answers(
    node_pair: tuple[Node, Node],
) -> None:
    a, b = node_pair
    padding = "x" * 400
    for start in range(0, COUNT, 1000):
        batch = [
            {
                "receiver": "nobody",
                "performative": "inform",
                "conversation_id": "big",
                "content": {"i": start + i, "pad": padding},
            }
            for i in range(1000)
        ]
        results = await b.messaging.submit_many(batch, client="tester")
        assert len(results) == 1000
    remote = a.cluster_messages
    assert remote is not None

    async def b_alive() -> bool:
        assert a.cluster is not None
        peer = a.cluster.membership.get("b")
        return peer is not None and peer.state == "alive"

    await eventually(b_alive, 10, what="a sees b alive")
    page = await remote.gather.conversation("big", COUNT - 1000, 1000)
    assert page.missing == []
    assert page.total == COUNT
    assert [m["content"]["i"] for m in page.items] == list(range(COUNT - 1000, COUNT))
    assert {m["node"] for m in page.items} == {"b"}

    async def all_dead_lettered() -> bool:
        return (await b.messaging.dead_letters(offset=0, limit=1))[1] == COUNT

    await eventually(all_dead_lettered, 10, what="b dead-lettered every message")
    letters = await remote.gather.dead_letters(COUNT - 1000, 1000)
    assert letters.missing == []
    assert len(letters.items) == 1000
    assert {letter["node"] for letter in letters.items} == {"b"}
    assert gather.ANSWER_BYTES < 1024 * 1024
