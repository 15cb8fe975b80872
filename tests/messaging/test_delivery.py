"""Delivery rules through a real Storage + Runtime + Messaging with real agents."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from caxton.errors import InvalidMessage, MessageTooLarge, WouldBlock
from caxton.messaging import Accepted
from caxton.storage.messages import MessageBatch
from caxton.wire.codec import decode_array
from tests.messaging.conftest import FAST, Stack
from tests.support import eventually


async def test_submit_wait_returns_the_reply_and_conversation_lists_both(stack: Stack) -> None:
    await stack.deploy("echo")
    accepted = await stack.messaging.submit(
        {"receiver": "echo", "performative": "request", "content": {"x": 1}, "reply_with": "q1"},
        client="alice",
        wait=True,
    )
    assert accepted.reply is not None
    reply = await accepted.reply.wait(5)
    assert reply is not None
    assert reply["performative"] == "inform"
    assert reply["content"] == {"x": 1}
    assert reply["receiver"] == "alice"
    assert reply["in_reply_to"] == "q1"
    assert reply["conversation_id"] == accepted.conversation_id
    messages, total = await stack.messaging.conversation(accepted.conversation_id)
    assert total == 2
    assert [m["message_id"] for m in messages] == [accepted.message_id, reply["message_id"]]


async def test_client_sender_may_not_be_an_agent(stack: Stack) -> None:
    await stack.deploy("echo")
    with pytest.raises(InvalidMessage):
        await stack.messaging.submit({"receiver": "echo", "performative": "inform"}, client="echo")


async def test_order_between_one_sender_and_one_receiver(stack: Stack) -> None:
    await stack.deploy("echo")
    conversation = "order-1"
    for i in range(40):
        await stack.messaging.submit(
            {
                "receiver": "echo",
                "performative": "inform",
                "content": i,
                "conversation_id": conversation,
            },
            client="bob",
        )

    async def all_replied() -> bool:
        return (await stack.messaging.conversation(conversation, limit=1000))[1] == 80

    await eventually(all_replied)
    messages, _ = await stack.messaging.conversation(conversation, limit=1000)
    replies = [m["content"] for m in messages if m["sender"] == "echo"]
    assert replies == list(range(40))
    page, total = await stack.messaging.conversation(conversation, offset=10, limit=5)
    assert total == 80
    assert page == messages[10:15]


async def test_agent_to_agent_messages_are_in_the_conversation(stack: Stack) -> None:
    await stack.deploy("pong")
    await stack.deploy("ping")
    accepted = await stack.messaging.submit(
        {
            "receiver": "ping",
            "performative": "request",
            "content": {"op": "start", "peer": "pong", "n": 30},
        },
        client="carol",
        wait=True,
    )
    assert accepted.reply is not None
    done = await accepted.reply.wait(10)
    assert done is not None
    assert done["content"] == {"done": 30}
    messages, total = await stack.messaging.conversation(accepted.conversation_id, limit=500)
    assert total == 62  # start, 30 requests, 30 informs, done
    ids = [m["message_id"] for m in messages]
    assert len(set(ids)) == len(ids)
    requests = [
        m["content"]["i"] for m in messages if m["sender"] == "ping" and "i" in m["content"]
    ]
    assert requests == list(range(1, 31))
    assert messages[-1]["content"] == {"done": 30}
    assert await stack.storage.messages.pending() == []  # every handled mark was written


async def test_fan_out_reaches_every_receiver(stack: Stack) -> None:
    await stack.deploy("echo")
    await stack.deploy("echo2", "echo")
    accepted = await stack.messaging.submit(
        {"receiver": ["echo", "echo2"], "performative": "request", "content": "hi"}, client="dan"
    )
    assert accepted.receivers == ("echo", "echo2")

    async def both() -> bool:
        messages, _ = await stack.messaging.conversation(accepted.conversation_id)
        return {m["sender"] for m in messages} == {"dan", "echo", "echo2"}

    await eventually(both)


async def test_full_mailbox_answers_would_block_and_dead_letters(data_dir: Path) -> None:
    config = dataclasses.replace(FAST, mailbox_capacity=2, execution_timeout=0.5)
    async with Stack(data_dir / "local.db", config) as stack:
        await stack.deploy("spin", "wat:spin")
        body = {"receiver": "spin", "performative": "inform"}
        for _ in range(3):  # one being handled, two queued
            await stack.messaging.submit(body, client="eve")
        with pytest.raises(WouldBlock) as info:
            await stack.messaging.submit(body, client="eve")
        letters, _ = await stack.messaging.dead_letters()
        assert "mailbox_full" in [d.reason for d in letters]
        assert info.value.details["message_id"] in [d.message_id for d in letters]


async def test_events_stream_filters_and_drops_slow_subscribers(stack: Stack) -> None:
    await stack.deploy("echo")
    watcher = stack.messaging.subscribe(agent="echo", performative="inform")
    slow = stack.messaging.subscribe(max_queue=1)
    accepted = await stack.messaging.submit(
        {"receiver": "echo", "performative": "request", "content": 7}, client="fay", wait=True
    )
    assert accepted.reply is not None
    await accepted.reply.wait(5)
    event = await asyncio.wait_for(anext(watcher), 5)
    assert event["type"] == "message"
    assert event["sender"] == "echo"
    assert event["content"] == 7
    stack.messaging.publish({"type": "agent", "name": "echo", "state": "running"})
    assert slow.dropped
    assert slow.closed
    watcher.close()
    assert stack.messaging.statistics().subscribers == 0


async def test_statistics_and_metric_samples(stack: Stack) -> None:
    await stack.deploy("echo")
    accepted = await stack.messaging.submit(
        {"receiver": "echo", "performative": "request"}, client="gus", wait=True
    )
    assert accepted.reply is not None
    await accepted.reply.wait(5)
    await stack.messaging.conversation(accepted.conversation_id)  # flushes the journal
    samples = {(s[0], tuple(sorted(s[2].items()))): s[3] for s in stack.messaging.metric_samples()}
    assert samples[("messages_sent", ())] >= 2
    assert samples[("messages_received", ())] >= 1
    assert ("message_queue_size", ()) in samples
    bounds, counts, _sum, count = samples[("message_processing_duration_seconds", ())]
    assert len(bounds) == len(counts)
    assert count >= 1


async def test_concurrent_submits_share_one_commit_and_are_durable_on_return(stack: Stack) -> None:
    await stack.deploy("echo")
    before = stack.storage.statistics().ops

    async def one(i: int) -> str:
        accepted = await stack.messaging.submit(
            {"receiver": "echo", "performative": "inform", "content": {"i": i}}, client=f"c{i}"
        )
        # Committed before submit returned: the history row is readable at once.
        blobs, _, total = await stack.storage.messages.conversation(accepted.conversation_id)
        assert total >= 1
        assert blobs
        return accepted.message_id

    ids = await asyncio.gather(*(one(i) for i in range(50)))
    assert len(set(ids)) == 50
    # The 50 submits started in one loop iteration: one group write, not 50 ops.
    assert stack.storage.statistics().ops - before < 50


async def test_a_cancelled_submitter_does_not_fail_its_group(stack: Stack) -> None:
    await stack.deploy("echo")
    body = {"receiver": "echo", "performative": "inform"}
    first = asyncio.ensure_future(stack.messaging.submit(body, client="a"))
    second = asyncio.ensure_future(stack.messaging.submit(body, client="b"))
    await asyncio.sleep(0)  # both joined the same group write
    first.cancel()
    accepted = await second
    assert accepted.sender == "b"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_submit_checks_the_client_name_and_the_size_with_runtime_fields(
    stack: Stack,
) -> None:
    await stack.deploy("echo")
    with pytest.raises(InvalidMessage) as bad:
        await stack.messaging.submit(
            {"receiver": "echo", "performative": "inform"}, client="not a name"
        )
    assert bad.value.details == {"field": "sender"}
    limit = stack.messaging.max_message_size
    # Fits alone, but not once sender, message_id, created_at and conversation_id are added.
    content = "x" * (limit - 80)
    with pytest.raises(MessageTooLarge):
        await stack.messaging.submit(
            {"receiver": "echo", "performative": "inform", "content": content}, client="alice"
        )


# -- submit_many (the API's bulk send) -------------------------------------------------------


def _count_writes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[MessageBatch]:
    """Record every group write of accepted messages (the journal keeps its own reference)."""
    writes: list[MessageBatch] = []
    write = stack.storage.messages.write_nowait

    def recording(batch: MessageBatch) -> Future[None]:
        writes.append(batch)
        return write(batch)

    monkeypatch.setattr(stack.storage.messages, "write_nowait", recording)
    return writes


async def test_submit_many_commits_all_in_one_write_and_answers_in_order(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.deploy("echo")
    writes = _count_writes(stack, monkeypatch)
    messages: list[dict[str, Any] | bytes] = [
        {"receiver": "echo", "performative": "inform", "content": 0},
        {"receiver": "echo", "performative": "inform", "content": 1, "conversation_id": "m-1"},
        b'{"receiver": "nobody-here", "performative": "inform", "content": 2}',
        {"receiver": "echo", "performative": "inform", "content": 3, "conversation_id": "m-1"},
        {"receiver": "echo", "performative": "inform", "content": 4, "sender": "zed"},
    ]
    results = await stack.messaging.submit_many(messages)
    assert len(writes) == 1  # one storage write for the whole call
    (batch,) = writes
    assert sum(count for _, count, _ in batch.chunks) == 5
    # The two messages of conversation m-1 share one history row, in the order given.
    assert [(conv, count) for conv, count, _ in batch.chunks if conv == "m-1"] == [("m-1", 2)]
    assert len(batch.pending) == 4  # one per delivery to a local agent
    assert all(isinstance(r, Accepted) for r in results)
    accepted = [r for r in results if isinstance(r, Accepted)]
    assert len({a.message_id for a in accepted}) == 5
    # Messages without a sender share one made-up client name; a given sender is kept.
    assert accepted[0].sender == accepted[1].sender == accepted[3].sender
    assert accepted[0].sender.startswith("client-")
    assert accepted[4].sender == "zed"
    assert accepted[2].receivers == ("nobody-here",)
    # Committed before submit_many returned, in order: the history is readable at once.
    for index, one in enumerate(accepted):
        blobs, _, total = await stack.storage.messages.conversation(one.conversation_id)
        assert total >= 1
        assert blobs
        if one.conversation_id != "m-1":
            (message,) = decode_array(blobs[0])
            assert message["content"] == index
            assert message["message_id"] == one.message_id
    blobs, _, total = await stack.storage.messages.conversation("m-1")
    assert [m["content"] for m in decode_array(blobs[0])] == [1, 3]

    async def dead_lettered() -> bool:  # decided on the loop after routing (a task)
        letters, _ = await stack.messaging.dead_letters()
        return [(d.reason, d.message_id) for d in letters] == [
            ("unknown_receiver", accepted[2].message_id)
        ]

    await eventually(dead_lettered)


async def test_submit_many_refuses_everything_when_one_message_is_bad(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.deploy("echo")
    writes = _count_writes(stack, monkeypatch)
    good = {"receiver": "echo", "performative": "inform", "conversation_id": "bad-batch"}
    with pytest.raises(InvalidMessage) as bad:
        await stack.messaging.submit_many([good, {"receiver": "echo", "performative": "shout"}])
    assert bad.value.details["index"] == 1
    assert bad.value.details["field"] == "performative"
    assert bad.value.message.startswith("message 1: ")
    with pytest.raises(InvalidMessage) as agent:
        await stack.messaging.submit_many([good, good, {**good, "sender": "echo"}])
    assert agent.value.details == {"field": "sender", "index": 2}
    limit = stack.messaging.max_message_size
    with pytest.raises(MessageTooLarge) as large:
        await stack.messaging.submit_many([{**good, "content": "x" * (limit - 80)}])
    assert large.value.details["index"] == 0
    assert writes == []
    assert (await stack.storage.messages.conversation("bad-batch"))[2] == 0


async def test_submit_many_dead_letters_a_full_mailbox_as_an_error_entry(data_dir: Path) -> None:
    config = dataclasses.replace(FAST, mailbox_capacity=2, execution_timeout=0.5)
    async with Stack(data_dir / "local.db", config) as stack:
        await stack.deploy("spin", "wat:spin")
        body = {"receiver": "spin", "performative": "inform"}
        # One being handled (it spins past submit_wait), two queued, two left over.
        results = await stack.messaging.submit_many([{**body, "content": i} for i in range(5)])
        assert [type(r) for r in results] == [Accepted] * 3 + [WouldBlock] * 2
        letters, _ = await stack.messaging.dead_letters()
        full = [d for d in letters if d.reason == "mailbox_full"]
        for index, result in enumerate(results[3:], 3):
            assert isinstance(result, WouldBlock)
            assert result.details["receivers"] == ["spin"]
            # Committed and dead-lettered: its ids name a stored message that is redrivable.
            assert result.details["message_id"] in [d.message_id for d in full]
            letter = next(d for d in full if d.message_id == result.details["message_id"])
            assert letter.message is not None
            assert letter.message["content"] == index
            _, _, total = await stack.storage.messages.conversation(
                result.details["conversation_id"]
            )
            assert total == 1


async def test_submit_many_fans_out_and_dead_letters_expired_messages(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.deploy("echo")
    await stack.deploy("echo2", "echo")
    writes = _count_writes(stack, monkeypatch)
    results = await stack.messaging.submit_many(
        [
            {"receiver": ["echo", "echo2"], "performative": "inform", "content": "both"},
            {"receiver": "echo", "performative": "inform", "reply_by": "2001-01-01T00:00:00Z"},
        ],
        client="hal",
    )
    fan_out, late = results
    assert isinstance(fan_out, Accepted)
    assert isinstance(late, Accepted)
    assert fan_out.receivers == ("echo", "echo2")
    assert fan_out.sender == late.sender == "hal"
    (batch,) = writes
    # Two pending deliveries for the fan-out; none for the expired message (never queued).
    assert sorted(r for _, r, _ in batch.pending) == ["echo", "echo2"]
    letters, _ = await stack.messaging.dead_letters()
    assert [(d.reason, d.message_id) for d in letters] == [("expired", late.message_id)]
