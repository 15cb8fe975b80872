"""The envelope rules of `send`: sender, ids, conversation inheritance, in_reply_to."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caxton.errors import InvalidMessage
from caxton.wire.envelope import Incoming, Stamper

CURRENT = b'{"sender":"alice","receiver":"me","conversation_id":"c1","reply_with":"q1"}'


def stamp(out: Any, incoming: bytes | None = CURRENT) -> dict[str, Any]:
    data = out if isinstance(out, bytes) else json.dumps(out).encode()
    receiver, stamped = Stamper().stamp(data, b'"me"', Incoming(incoming))
    body: dict[str, Any] = json.loads(stamped)
    assert body["receiver"] == receiver
    return body


def test_reply_to_the_current_sender_inherits_and_answers() -> None:
    body = stamp({"receiver": "alice", "performative": "inform", "content": 1})
    assert body["sender"] == "me"
    assert body["conversation_id"] == "c1"
    assert body["in_reply_to"] == "q1"
    assert body["message_id"]
    assert body["created_at"]


def test_message_to_someone_else_inherits_only_the_conversation() -> None:
    body = stamp({"receiver": "bob", "performative": "inform"})
    assert body["conversation_id"] == "c1"
    assert "in_reply_to" not in body


def test_guest_fields_win_except_sender_and_ids() -> None:
    body = stamp(
        {
            "receiver": "alice",
            "performative": "inform",
            "sender": "mallory",
            "message_id": "x",
            "conversation_id": "c2",
            "in_reply_to": "z",
        }
    )
    assert (body["sender"], body["conversation_id"], body["in_reply_to"]) == ("me", "c2", "z")
    assert body["message_id"] != "x"


def test_list_receiver_and_leading_whitespace() -> None:
    body = stamp(b'  {"receiver":["alice","bob"],"performative":"inform"}')
    assert body["receiver"] == ["alice", "bob"]
    assert body["in_reply_to"] == "q1"


@pytest.mark.parametrize(
    "raw",
    [
        b"[1]",
        b"not json",
        b'{"content":1}',
        b'{"receiver":"","performative":"inform"}',
        b'{"receiver":5,"performative":"inform"}',
        b'{"receiver":"bob"}',  # no performative
        b'{"receiver":"bob","performative":null}',
        b'{"receiver":"bob","performative":"shout"}',
        b'{"performative":"inform"}',  # no receiver
        b"",
    ],
)
def test_malformed_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        Stamper().stamp(raw, b'"me"', None)


@given(
    receiver=st.text(min_size=1, max_size=20),
    content=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ),
)
def test_stamped_messages_are_valid_json_with_the_guest_fields(receiver: str, content: Any) -> None:
    message = {"receiver": receiver, "performative": "inform", "content": content}
    body = stamp(message, None)
    assert body["receiver"] == receiver
    assert body["content"] == content
    assert body["sender"] == "me"
    assert body["conversation_id"]


def test_performative_spellings_are_normalised() -> None:
    body = stamp({"receiver": "bob", "performative": "Accept-Proposal"})
    assert body["performative"] == "accept_proposal"


@pytest.mark.parametrize(
    "out",
    [
        {"receiver": "alice", "performative": "inform", "content": 1},
        {"receiver": "bob", "performative": "request", "reply_with": "r\u00e9"},
        {"receiver": "bob", "performative": "inform", "conversation_id": "c9"},
    ],
)
def test_remembered_incoming_equals_decoding_the_stamped_message(out: dict[str, Any]) -> None:
    stamper = Stamper()
    _, stamped = stamper.stamp(json.dumps(out).encode(), b'"me"', Incoming(CURRENT), "me")
    known, decoded = stamper.incoming_for(stamped), Incoming(stamped)
    for field in ("sender", "conversation", "conversation_part", "reply_with_json"):
        assert getattr(known, field) == getattr(decoded, field), field
    assert stamper.incoming_for(bytes(stamped)).conversation == decoded.conversation  # a copy
