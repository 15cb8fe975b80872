"""Envelope validation and normalisation (`caxton.wire.codec`), with properties."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from caxton.errors import InvalidMessage, MessageTooLarge
from caxton.wire.codec import PERFORMATIVES, decode, encode, parse_message

BASE = {"performative": "inform", "receiver": "echo", "content": {"a": 1}}


def parse(**changes: Any) -> dict[str, Any]:
    body = {**BASE, **changes}
    return parse_message({k: v for k, v in body.items() if v is not ...}, max_size=4096)


def test_all_22_performatives_in_both_spellings() -> None:
    assert len(PERFORMATIVES) == 22
    for p in PERFORMATIVES:
        assert parse(performative=p)["performative"] == p
        assert parse(performative=p.replace("_", "-").upper())["performative"] == p


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"performative": "shout"}, "performative", id="unknown-performative"),
        pytest.param({"performative": ...}, "performative", id="missing-performative"),
        pytest.param({"receiver": ...}, "receiver", id="missing-receiver"),
        pytest.param({"receiver": 5}, "receiver", id="receiver-not-a-name"),
        pytest.param({"receiver": []}, "receiver", id="empty-receiver-list"),
        pytest.param({"receiver": ["a", 1]}, "receiver", id="receiver-list-not-names"),
        pytest.param({"receiver": "has space"}, "receiver", id="receiver-bad-name"),
        pytest.param({"reply_by": "tomorrow"}, "reply_by", id="bad-reply-by"),
        pytest.param({"reply_by": 17}, "reply_by", id="reply-by-not-string"),
        pytest.param({"conversation_id": 7}, "conversation_id", id="conversation-not-string"),
        pytest.param({"reply_with": ["x"]}, "reply_with", id="reply-with-not-string"),
        pytest.param({"sender": "a b"}, "sender", id="bad-sender"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse(**changes)
    assert info.value.details["field"] == field
    assert field in info.value.message


def test_valid_optional_fields_and_fan_out() -> None:
    body = parse(
        receiver=["a", "b"],
        reply_by="2030-01-01T00:00:00.123456789+02:00",
        conversation_id="c-1",
        protocol="fipa-request",
        x_custom=1,
    )
    assert body["receiver"] == ["a", "b"]
    assert body["x_custom"] == 1


def test_too_large_is_413() -> None:
    with pytest.raises(MessageTooLarge):
        parse_message({**BASE, "content": "x" * 5000}, max_size=4096)
    with pytest.raises(MessageTooLarge):
        parse_message(encode({**BASE, "content": "x" * 5000}), max_size=4096)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    performative=st.sampled_from(sorted(PERFORMATIVES)),
    receiver=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    content=json_values,
)
def test_encode_decode_round_trip(performative: str, receiver: str, content: Any) -> None:
    body = parse_message(
        {"performative": performative, "receiver": receiver, "content": content}, max_size=1 << 20
    )
    assert decode(encode(body)) == body
    assert parse_message(encode(body), max_size=1 << 20) == body


@given(
    st.dictionaries(st.sampled_from([*BASE, "reply_by", "sender", "x"]), json_values) | json_values
)
def test_validation_raises_only_message_errors(value: Any) -> None:
    for candidate in (value, msgspec.json.encode(value)):
        if not isinstance(candidate, dict | bytes):
            continue
        with contextlib.suppress(InvalidMessage, MessageTooLarge):
            parse_message(candidate, max_size=200)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_message_errors(raw: bytes) -> None:
    with contextlib.suppress(InvalidMessage, MessageTooLarge):
        parse_message(raw, max_size=200)
