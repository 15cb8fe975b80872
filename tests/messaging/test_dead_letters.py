"""Each dead-letter reason, the `failure` reply owed to a sender, and redrive."""

from __future__ import annotations

from typing import Any

from caxton.messaging import Messaging
from tests.messaging.conftest import Stack
from tests.support import eventually


async def ask(messaging: Messaging, receiver: str, **fields: Any) -> tuple[Any, dict[str, Any]]:
    body = {"receiver": receiver, "performative": "request", "reply_with": "r1", **fields}
    accepted = await messaging.submit(body, client="asker", wait=True)
    assert accepted.reply is not None
    reply = await accepted.reply.wait(5)
    assert reply is not None
    return accepted, reply


async def only_letter(messaging: Messaging, reason: str) -> Any:
    async def present() -> bool:
        letters, _ = await messaging.dead_letters()
        return any(d.reason == reason for d in letters)

    await eventually(present)
    letters, _ = await messaging.dead_letters()
    return next(d for d in letters if d.reason == reason)


def assert_failure(reply: dict[str, Any], accepted: Any, reason: str) -> None:
    assert reply["performative"] == "failure"
    assert reply["content"] == {"reason": reason, "message_id": accepted.message_id}
    assert reply["in_reply_to"] == "r1"
    assert reply["conversation_id"] == accepted.conversation_id


async def test_unknown_receiver(stack: Stack) -> None:
    accepted, reply = await ask(stack.messaging, "nobody")
    assert_failure(reply, accepted, "unknown_receiver")
    letter = await only_letter(stack.messaging, "unknown_receiver")
    assert (letter.receiver, letter.message_id) == ("nobody", accepted.message_id)
    assert letter.message is not None
    assert letter.message["reply_with"] == "r1"


async def test_handler_failure_carries_the_cause(stack: Stack) -> None:
    await stack.deploy("fail", "wat:fail")
    accepted, reply = await ask(stack.messaging, "fail")
    assert_failure(reply, accepted, "handler_failed")
    letter = await only_letter(stack.messaging, "handler_failed")
    assert letter.details["cause"] == "returned_error"
    assert stack.messaging.statistics().dead_letters["handler_failed"] == 1


async def test_expired_reply_by(stack: Stack) -> None:
    await stack.deploy("echo")
    accepted, reply = await ask(stack.messaging, "echo", reply_by="2001-01-01T00:00:00Z")
    assert_failure(reply, accepted, "expired")
    await only_letter(stack.messaging, "expired")


async def test_agent_to_agent_failure_reaches_the_sending_agent(stack: Stack) -> None:
    # ping asks "fail" for a request; the failure comes back to ping (an agent): ping answers
    # it with not_understood to fail's name, which is then dead-lettered too: nothing hangs.
    await stack.deploy("fail", "wat:fail")
    await stack.deploy("ping")
    await stack.messaging.submit(
        {
            "receiver": "ping",
            "performative": "request",
            "content": {"op": "start", "peer": "fail", "n": 1},
        },
        client="zed",
    )
    letter = await only_letter(stack.messaging, "handler_failed")
    assert letter.sender == "ping"
    assert letter.receiver == "fail"


async def test_stopped_agent_then_redrive(stack: Stack) -> None:
    await stack.deploy("echo")
    await stack.runtime.stop_agent("echo")
    accepted = await stack.messaging.submit(
        {"receiver": "echo", "performative": "inform", "content": 5}, client="hal"
    )
    letter = await only_letter(stack.messaging, "agent_not_running")
    assert letter.message_id == accepted.message_id
    await stack.deploy("echo")
    again = await stack.messaging.redrive(letter.id)
    assert again.message_id == accepted.message_id

    async def replied() -> bool:
        messages, _ = await stack.messaging.conversation(accepted.conversation_id)
        return any(m["sender"] == "echo" for m in messages)

    await eventually(replied)
    letters, total = await stack.messaging.dead_letters()
    assert total == 1
    assert letters[0].redriven_at is not None
