"""`Speculation` on its own: which messages go early, and when a receiver's messages must wait
for their rows (the order of one sender's messages to one receiver)."""

from __future__ import annotations

from caxton.cluster.speculation import FORGET_AFTER, Speculation
from caxton.storage.outbox import OutboxEntry


def body(mid: str) -> bytes:
    return b'{"message_id":"%s"}' % mid.encode()


def row(seq: int, mid: str, receiver: str = "r") -> OutboxEntry:
    return OutboxEntry(seq, mid, "b", receiver, body(mid), 0.0, 0, 0.0, True)


def never(_: str) -> bool:
    return False


def test_a_message_written_on_the_loop_holds_back_later_early_ones() -> None:
    """A timer or an API message for r is being written: a later agent message for r is not
    sent before it; once its row arrived, r's messages go early again."""
    spec = Speculation()
    spec.expect([("t1", "b", "r", body("t1"))], now=0.0)
    spec.incoming.append((body("m2"), "r", "b"))
    spec.incoming.append((body("x1"), "other", "b"))
    spec.take_incoming(0.0)
    assert [e.message_id for e in spec.candidates(never, never, 0.0)] == ["x1"]
    settled = spec.committed([row(1, "t1"), row(2, "m2")], now=0.0)
    assert [e.message_id for e in settled.send] == ["t1", "m2"]  # in order, through the view
    assert [e.fresh for e in settled.send] == [True, True]  # neither was ever sent
    spec.incoming.append((body("m3"), "r", "b"))
    spec.take_incoming(0.0)
    assert [e.message_id for e in spec.candidates(never, never, 0.0)] == ["x1", "m3"]


def test_a_failed_early_send_comes_back_as_a_retry_and_blocks_until_its_row() -> None:
    spec = Speculation()
    spec.incoming.append((body("m1"), "r", "b"))
    spec.take_incoming(0.0)
    (early,) = spec.candidates(never, never, 0.0)
    spec.started([early])
    assert spec.finished([early], acked=(), now=1.0).send == []  # its row is not here yet
    spec.incoming.append((body("m2"), "r", "b"))
    spec.take_incoming(1.0)
    assert spec.candidates(never, never, 1.0) == []  # m2 may not pass m1
    settled = spec.committed([row(1, "m1"), row(2, "m2")], now=1.0)
    assert [(e.message_id, e.fresh) for e in settled.send] == [("m1", False), ("m2", True)]


def test_an_acknowledged_early_send_deletes_its_row_and_a_held_row_waits_for_the_answer() -> None:
    spec = Speculation()
    for mid in ("m1", "m2"):
        spec.incoming.append((body(mid), "r", "b"))
    spec.take_incoming(0.0)
    first, second = spec.candidates(never, never, 0.0)
    spec.started([first, second])
    assert spec.finished([first], acked=[first.seq], now=0.0).delete == []
    held = spec.committed([row(1, "m1"), row(2, "m2")], now=0.0)
    assert (held.send, held.delete) == ([], [1])  # m1 acknowledged; m2 still in flight
    assert spec.finished([second], acked=[second.seq], now=0.0).delete == [2]
    assert not spec.tracking


def test_a_key_whose_row_never_comes_is_forgotten_after_its_settling() -> None:
    """Its journal write failed: the receiver is free again after `FORGET_AFTER`, counted
    from when the key was settled, not from when it was recorded."""
    spec = Speculation()
    spec.expect([("lost", "b", "r", body("lost"))], now=0.0)
    spec.incoming.append((body("m1"), "r", "b"))
    spec.take_incoming(FORGET_AFTER - 1)
    assert spec.candidates(never, never, FORGET_AFTER - 1) == []  # m1 is dropped too (r)
    assert spec.expire(FORGET_AFTER + 1) == 1  # "lost"; m1 was dropped later, still kept
    spec.committed([row(1, "m1")], now=FORGET_AFTER + 1)
    assert not spec.tracking
    spec.incoming.append((body("m2"), "r", "b"))
    spec.take_incoming(FORGET_AFTER + 1)
    assert [e.message_id for e in spec.candidates(never, never, FORGET_AFTER + 1)] == ["m2"]
