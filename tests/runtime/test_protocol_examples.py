"""The interaction-protocol examples: fipa-request and fipa-contract-net.

``requester`` + ``responder`` (fipa-request) and ``manager`` + ``bidder`` (fipa-contract-net)
in ``examples/agents/``. Most tests need no Caxton runtime: `Net` is a stand-in host and
router written with plain wasmtime-py. It runs several reactor agents (each with its own WASI
argv ``[name]`` and env), completes what they send the way docs/agents.md ("ABI v1
reference") says the host does (``sender``, ``message_id``; ``conversation_id`` inherited from
the message being handled; ``in_reply_to`` from its ``reply_with`` for a message back to its
sender), delivers in FIFO order, sends the runtime's ``failure`` for unknown receivers and
failed handlers, and keeps every message in ``transcript`` (what ``caxton conversation show``
lists). The last tests run the same agents in the real `Runtime`.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
import wasmtime

from caxton.runtime import Runtime
from tests.support import EXAMPLES, eventually, example, message

from .conftest import Deploy, Recorder

ENGINE = wasmtime.Engine()
I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()
ASKS_FOR_REPLY = {"request", "query_if", "query_ref", "cfp"}
TASK = "build-widget"

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- stand-in host


@dataclass
class Guest:
    name: str
    store: wasmtime.Store
    instance: wasmtime.Instance

    def func(self, name: str) -> wasmtime.Func:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return func

    def handle(self, data: bytes) -> int:
        ptr = self.func("caxton_alloc")(self.store, len(data))
        memory = self.instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        memory.write(self.store, data, ptr)
        result = self.func("caxton_handle")(self.store, ptr, len(data))
        assert isinstance(result, int)
        return result


@dataclass
class Net:
    """Reactor agents, a FIFO router between them, and the clients outside."""

    clients: set[str] = field(default_factory=lambda: {"client"})
    agents: dict[str, Guest] = field(default_factory=dict)
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    outside: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[str, int, str]] = field(default_factory=list)
    handler_failures: list[tuple[str, int]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def spawn(self, module: str, name: str, **env: str) -> Guest:
        store = wasmtime.Store(ENGINE)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [name]
        wasi.env = list(env.items())
        store.set_wasi(wasi)
        linker = wasmtime.Linker(ENGINE)
        linker.define_wasi()
        self._define_caxton(linker, name)
        wasm = wasmtime.Module.from_file(ENGINE, str(EXAMPLES / f"{module}.wasm"))
        guest = Guest(name, store, linker.instantiate(store, wasm))
        guest.func("_initialize")(store)
        self.agents[name] = guest
        return guest

    def _define_caxton(self, linker: wasmtime.Linker, name: str) -> None:
        def read(caller: wasmtime.Caller, ptr: int, length: int) -> bytes:
            memory = caller.get("memory")
            assert isinstance(memory, wasmtime.Memory)
            return bytes(memory.read(caller, ptr, ptr + length))

        def send(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            out = json.loads(read(caller, ptr, length))
            assert isinstance(out, dict)
            self._stamp(name, out)
            self.post(out)
            return 0

        def log(caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
            self.logs.append((name, level, read(caller, ptr, length).decode()))

        def unused(*_: Any) -> int:
            raise AssertionError("the protocol examples use only send and log")

        ty = wasmtime.FuncType
        linker.define_func("caxton", "send", ty([I32, I32], [I32]), send, access_caller=True)
        linker.define_func("caxton", "log", ty([I32, I32, I32], []), log, access_caller=True)
        linker.define_func("caxton", "kv_get", ty([I32] * 4, [I32]), unused)
        linker.define_func("caxton", "kv_set", ty([I32] * 4, [I32]), unused)
        linker.define_func("caxton", "kv_delete", ty([I32] * 2, [I32]), unused)
        linker.define_func("caxton", "schedule", ty([I64, I32, I32], [I32]), unused)

    def _stamp(self, sender: str, out: dict[str, Any]) -> None:
        """What the host's ``send`` adds (docs/agents.md, "ABI v1 reference")."""
        incoming = self.current
        assert incoming is not None, "sent outside a handler"
        out["sender"] = sender
        out["message_id"] = f"m-{next(self.ids)}"
        if out.get("conversation_id") is None:
            out["conversation_id"] = incoming["conversation_id"]
        if (
            "in_reply_to" not in out
            and "reply_with" in incoming
            and out["receiver"] == incoming.get("sender")
        ):
            out["in_reply_to"] = incoming["reply_with"]

    def post(self, msg: dict[str, Any]) -> None:
        """Record ``msg`` in the conversation and queue it for delivery."""
        msg.setdefault("message_id", f"m-{next(self.ids)}")
        self.transcript.append(msg)
        self.queue.append(msg)

    def send(self, sender: str, receiver: str, content: Any, **fields: Any) -> None:
        """A message from outside (a client, or a test playing an agent)."""
        msg = {"sender": sender, "receiver": receiver, "performative": "request"}
        msg.update(fields, content=content)
        msg.setdefault("conversation_id", f"conv-{next(self.ids)}")
        self.post(msg)

    def _failure(self, msg: dict[str, Any], reason: str) -> None:
        """The runtime's answer to a sender that asked for a reply (deadletters.py)."""
        if msg["performative"] == "failure":
            return
        if "reply_with" not in msg and msg["performative"] not in ASKS_FOR_REPLY:
            return
        reply = {
            "sender": msg["receiver"],
            "receiver": msg["sender"],
            "performative": "failure",
            "conversation_id": msg["conversation_id"],
            "content": {"reason": reason, "message_id": msg["message_id"]},
        }
        if "reply_with" in msg:
            reply["in_reply_to"] = msg["reply_with"]
        self.post(reply)

    def run(self, to: str = "client", limit: int = 10_000) -> list[dict[str, Any]]:
        """Deliver until nothing is queued; what went to the client ``to`` meanwhile."""
        start = len(self.outside)
        for _ in range(limit):
            if not self.queue:
                return [m for m in self.outside[start:] if m["receiver"] == to]
            msg = self.queue.popleft()
            receiver = msg["receiver"]
            guest = self.agents.get(receiver)
            if guest is None:
                if receiver in self.clients:
                    self.outside.append(msg)
                else:
                    self._failure(msg, "unknown_receiver")
                continue
            self.current = msg
            try:
                result = guest.handle(json.dumps(msg, separators=(",", ":")).encode())
            finally:
                self.current = None
            if result != 0:
                self.handler_failures.append((receiver, result))
                self._failure(msg, "handler_failed")
        raise AssertionError("messages keep flowing")


def flow(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(m["sender"], m["receiver"], m["performative"]) for m in messages]


def by_agents(messages: list[dict[str, Any]], clients: set[str]) -> list[dict[str, Any]]:
    return [m for m in messages if m["sender"] not in clients]


@pytest.fixture
def net() -> Net:
    return Net()


# --------------------------------------------------------------------------- fipa-request


@pytest.fixture
def request_net(net: Net) -> Net:
    net.spawn("requester", "requester")
    net.spawn("responder", "responder")
    return net


def ask(net: Net, content: dict[str, Any], **fields: Any) -> None:
    net.send("client", "requester", {"op": "ask", "responder": "responder", **content}, **fields)


def test_request_add_agree_then_inform(request_net: Net) -> None:
    net = request_net
    ask(net, {"action": "add", "a": 2, "b": 3}, conversation_id="conv-r", reply_with="r-1")
    [final] = net.run()
    assert flow(net.transcript) == [
        ("client", "requester", "request"),
        ("requester", "responder", "request"),
        ("responder", "requester", "agree"),
        ("responder", "requester", "inform"),
        ("requester", "client", "inform"),
    ]
    _, request, agree, inform, _ = net.transcript
    assert request["content"] == {"action": "add", "a": 2, "b": 3}
    assert request["reply_with"] == "ask-1"
    assert agree["content"] == {"action": "add"}
    assert inform["content"] == {"result": 5}
    assert agree["in_reply_to"] == inform["in_reply_to"] == "ask-1"
    assert final["content"] == {"outcome": "done", "result": 5}
    assert final["in_reply_to"] == "r-1"
    assert {m["conversation_id"] for m in net.transcript} == {"conv-r"}
    assert all(m["protocol"] == "fipa-request" for m in by_agents(net.transcript, net.clients))
    assert net.handler_failures == []


def test_request_upper_keeps_unicode_and_escapes(request_net: Net) -> None:
    text = 'héllo "wörld"\n😀 ok'
    ask(request_net, {"action": "upper", "text": text})
    [final] = request_net.run()
    assert final["content"] == {"outcome": "done", "result": 'HéLLO "WöRLD"\n😀 OK'}
    assert "in_reply_to" not in final  # the client set no reply_with


def test_request_unknown_action_is_refused(request_net: Net) -> None:
    ask(request_net, {"action": "fly", "to": "moon"}, reply_with="r-2")
    [final] = request_net.run()
    assert flow(request_net.transcript)[1:] == [
        ("requester", "responder", "request"),
        ("responder", "requester", "refuse"),
        ("requester", "client", "inform"),
    ]
    assert request_net.transcript[2]["content"] == {"reason": "unknown action fly"}
    assert final["content"] == {"outcome": "refused", "reason": "unknown action fly"}
    assert final["in_reply_to"] == "r-2"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"action": "add", "a": "2", "b": 3}, "add needs integers a and b"),
        ({"action": "add", "a": 1.5, "b": 3}, "add needs integers a and b"),
        ({"action": "upper", "text": 7}, "upper needs a string text"),
        ({"action": 7}, "content must be an object with a string action"),
        ({}, "content must be an object with a string action"),
    ],
)
def test_request_malformed_content_is_not_understood(
    request_net: Net, content: dict[str, Any], error: str
) -> None:
    ask(request_net, content)
    [final] = request_net.run()
    assert flow(request_net.transcript)[2] == ("responder", "requester", "not_understood")
    assert request_net.transcript[2]["content"] == {"error": error}
    assert final["content"] == {"outcome": "not_understood", "reason": error}


def test_request_agree_then_failure(request_net: Net) -> None:
    ask(request_net, {"action": "add", "a": 2**63 - 1, "b": 1})
    [final] = request_net.run()
    assert [m["performative"] for m in request_net.transcript[2:4]] == ["agree", "failure"]
    assert final["content"] == {"outcome": "failed", "reason": "integer overflow"}


def test_request_to_an_unknown_responder_fails(request_net: Net) -> None:
    request_net.send("client", "requester", {"op": "ask", "responder": "nobody", "action": "x"})
    [final] = request_net.run()
    assert flow(request_net.transcript)[2] == ("nobody", "requester", "failure")
    assert final["content"] == {"outcome": "failed", "reason": "unknown_receiver"}


def test_requester_runs_asks_side_by_side(request_net: Net) -> None:
    net = request_net
    for i in range(17):  # all 17 arrive before the first answer: 16 slots
        ask(net, {"action": "add", "a": i, "b": 100}, conversation_id=f"c{i}", reply_with=f"r{i}")
    finals = net.run()
    assert len(finals) == 17
    busy = [m for m in finals if m["performative"] == "failure"]
    assert [(m["conversation_id"], m["content"]) for m in busy] == [
        ("c16", {"reason": "too many requests in progress"})
    ]
    done = {m["conversation_id"]: m for m in finals if m["performative"] == "inform"}
    assert len(done) == 16
    for i in range(16):
        assert done[f"c{i}"]["content"] == {"outcome": "done", "result": i + 100}
        assert done[f"c{i}"]["in_reply_to"] == f"r{i}"
    # the slots are free again
    ask(net, {"action": "add", "a": 1, "b": 1})
    assert net.run()[0]["content"] == {"outcome": "done", "result": 2}


@pytest.mark.parametrize(
    ("content", "performative"),
    [
        ({"op": "ask"}, "not_understood"),
        ({"op": "ask", "responder": 5}, "not_understood"),
        ({"op": "other"}, "not_understood"),
        ("ask", "not_understood"),
    ],
)
def test_requester_answers_a_bad_ask(request_net: Net, content: Any, performative: str) -> None:
    request_net.send("client", "requester", content)
    [reply] = request_net.run()
    assert reply["performative"] == performative
    assert "error" in reply["content"]
    assert reply["protocol"] == "fipa-request"


def test_requester_ignores_answers_to_no_ask(request_net: Net) -> None:
    request_net.send("responder", "requester", {"result": 1}, performative="inform")
    request_net.send("x", "requester", None, performative="failure", in_reply_to="ask-9")
    assert request_net.run() == []
    assert len(request_net.transcript) == 2


def test_requester_ignores_an_answer_from_someone_else(request_net: Net) -> None:
    net = request_net
    net.clients.add("intruder")
    ask(net, {"action": "add", "a": 1, "b": 2})
    net.send("intruder", "requester", {"result": 666}, performative="inform", in_reply_to="ask-1")
    [final] = net.run()
    assert final["content"] == {"outcome": "done", "result": 3}


def test_responder_alone(net: Net) -> None:
    net.spawn("responder", "responder")
    net.send("client", "responder", {"action": "add", "a": -2, "b": 3}, reply_with="q")
    net.send("client", "responder", "add 2 3")
    net.send("client", "responder", {"x": 1}, performative="inform")
    net.send("client", "responder", {"reason": "x"}, performative="failure")
    replies = net.run()
    assert [(m["performative"], m["content"]) for m in replies] == [
        ("agree", {"action": "add"}),
        ("inform", {"result": 1}),
        ("not_understood", {"error": "content must be an object with a string action"}),
        ("not_understood", {"error": "responder expects a request"}),
    ]
    assert replies[0]["in_reply_to"] == replies[1]["in_reply_to"] == "q"


# --------------------------------------------------------------------------- contract-net


def fnv_price(name: str) -> int:
    h = 2166136261
    for byte in name.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return 10 + h % 90


@pytest.fixture
def market(net: Net) -> Net:
    net.spawn("manager", "manager")
    net.spawn("bidder", "bidder-a", PRICE="30")
    net.spawn("bidder", "bidder-b", PRICE="20")
    net.spawn("bidder", "bidder-c", REFUSE="1")
    return net


def start(net: Net, bidders: list[str], task: Any = TASK, **fields: Any) -> None:
    net.send("client", "manager", {"op": "start", "task": task, "bidders": bidders}, **fields)


def test_contract_net_lowest_price_wins(market: Net) -> None:
    net = market
    start(net, ["bidder-a", "bidder-b", "bidder-c"], conversation_id="conv-cn", reply_with="r-1")
    [final] = net.run()
    assert flow(net.transcript) == [
        ("client", "manager", "request"),
        ("manager", "bidder-a", "cfp"),
        ("manager", "bidder-b", "cfp"),
        ("manager", "bidder-c", "cfp"),
        ("bidder-a", "manager", "propose"),
        ("bidder-b", "manager", "propose"),
        ("bidder-c", "manager", "refuse"),
        ("manager", "bidder-b", "accept_proposal"),
        ("manager", "bidder-a", "reject_proposal"),
        ("bidder-b", "manager", "inform"),
        ("manager", "client", "inform"),
    ]
    t = net.transcript
    assert all(m["content"] == {"task": TASK} for m in t[1:4])
    assert all(m["reply_with"] == "cn-1" for m in t[1:4])
    assert [m["content"] for m in t[4:7]] == [
        {"price": 30},
        {"price": 20},
        {"reason": "not taking work"},
    ]
    assert all(m["in_reply_to"] == "cn-1" for m in t[4:7])
    assert [t[4]["reply_with"], t[5]["reply_with"]] == ["bidder-a-p1", "bidder-b-p1"]
    accept, reject, inform = t[7:10]
    assert accept["content"] == {"task": TASK, "price": 20}
    assert (accept["in_reply_to"], accept["reply_with"]) == ("bidder-b-p1", "cn-1")
    assert reject["content"] == {"task": TASK, "reason": "another proposal was accepted"}
    assert reject["in_reply_to"] == "bidder-a-p1"
    assert inform["content"] == {"done": TASK, "price": 20}
    assert inform["in_reply_to"] == "cn-1"
    assert final["content"] == {"winner": "bidder-b", "price": 20, "proposals": 2, "refusals": 1}
    assert final["in_reply_to"] == "r-1"
    assert {m["conversation_id"] for m in t} == {"conv-cn"}
    assert all(m["protocol"] == "fipa-contract-net" for m in by_agents(t, net.clients))
    assert net.handler_failures == []


def test_contract_net_everyone_refuses(net: Net) -> None:
    net.spawn("manager", "manager")
    for name in ("no-1", "no-2", "no-3"):
        net.spawn("bidder", name, REFUSE="1")
    start(net, ["no-1", "no-2", "no-3"], reply_with="r-9")
    [final] = net.run()
    assert [m["performative"] for m in net.transcript] == [
        "request", "cfp", "cfp", "cfp", "refuse", "refuse", "refuse", "failure",
    ]  # fmt: skip
    assert final["receiver"] == "client"
    assert final["content"] == {"reason": "no proposals"}
    assert final["in_reply_to"] == "r-9"
    assert final["protocol"] == "fipa-contract-net"


def test_bidder_without_env_derives_its_price_from_its_name(net: Net) -> None:
    net.spawn("manager", "manager")
    names = ["bidder-x", "bidder-y", "bidder-z"]
    for name in names:
        net.spawn("bidder", name)
    start(net, names)
    [final] = net.run()
    prices = {name: fnv_price(name) for name in names}
    assert [m["content"]["price"] for m in net.transcript[4:7]] == list(prices.values())
    winner = min(names, key=lambda n: (prices[n], names.index(n)))
    assert final["content"] == {
        "winner": winner,
        "price": prices[winner],
        "proposals": 3,
        "refusals": 0,
    }
    assert sum(m["performative"] == "reject_proposal" for m in net.transcript) == 2


def test_a_tie_goes_to_the_first_bidder_in_the_list(net: Net) -> None:
    net.spawn("manager", "manager")
    net.spawn("bidder", "one", PRICE="20")
    net.spawn("bidder", "two", PRICE="20")
    start(net, ["two", "one"])
    [final] = net.run()
    assert final["content"]["winner"] == "two"


def test_an_unknown_bidder_counts_as_a_refusal(market: Net) -> None:
    start(market, ["ghost", "bidder-b"])
    [final] = market.run()
    assert ("ghost", "manager", "failure") in flow(market.transcript)
    assert final["content"] == {"winner": "bidder-b", "price": 20, "proposals": 1, "refusals": 1}


def test_a_winner_that_does_not_deliver(market: Net) -> None:
    net = market
    net.clients.add("fake")
    start(net, ["fake", "bidder-a"])
    net.run()
    net.send("fake", "manager", {"price": 1}, performative="propose", in_reply_to="cn-1")
    net.run()
    assert flow(net.transcript)[-2:] == [
        ("manager", "fake", "accept_proposal"),
        ("manager", "bidder-a", "reject_proposal"),
    ]
    net.send("fake", "manager", {"task": TASK}, performative="agree", in_reply_to="cn-1")
    assert net.run() == []  # not an answer to the award: still waiting
    net.send("fake", "manager", {"reason": "broke"}, performative="failure", in_reply_to="cn-1")
    [final] = net.run()
    assert final["performative"] == "failure"
    assert final["content"] == {"reason": "the winner did not do the task", "winner": "fake"}


def test_duplicate_and_late_answers_are_ignored(market: Net) -> None:
    net = market
    net.clients.add("fake")
    start(net, ["fake", "bidder-b"])
    net.send("fake", "manager", {"price": 50}, performative="propose", in_reply_to="cn-1")
    net.send("fake", "manager", {"price": 1}, performative="propose", in_reply_to="cn-1")
    [final] = net.run()
    assert final["content"] == {"winner": "bidder-b", "price": 20, "proposals": 2, "refusals": 0}
    # after the end: a late answer changes nothing
    net.send("bidder-a", "manager", {"price": 1}, performative="propose", in_reply_to="cn-1")
    assert net.run() == []


def test_negotiations_run_side_by_side(market: Net) -> None:
    start(market, ["bidder-a", "bidder-c"], conversation_id="one")
    start(market, ["bidder-b", "bidder-c"], conversation_id="two", task={"n": 2})
    finals = {m["conversation_id"]: m["content"] for m in market.run()}
    assert finals == {
        "one": {"winner": "bidder-a", "price": 30, "proposals": 1, "refusals": 1},
        "two": {"winner": "bidder-b", "price": 20, "proposals": 1, "refusals": 1},
    }
    done = [m["content"] for m in market.transcript if m["performative"] == "inform"]
    assert {"done": {"n": 2}, "price": 20} in done


@pytest.mark.parametrize(
    "content",
    [
        {"op": "start", "bidders": ["bidder-a"]},
        {"op": "start", "task": TASK},
        {"op": "start", "task": TASK, "bidders": []},
        {"op": "start", "task": TASK, "bidders": "bidder-a"},
        {"op": "start", "task": TASK, "bidders": ["bidder-a", 7]},
        {"op": "start", "task": TASK, "bidders": [f"b-{i}" for i in range(17)]},
        {"op": "start", "task": TASK, "bidders": ["x" * 70]},
        {"op": "start", "task": "x" * 600, "bidders": ["bidder-a"]},
        {"op": "stop"},
        "start",
    ],
)
def test_manager_answers_a_bad_start(market: Net, content: Any) -> None:
    market.send("client", "manager", content)
    [reply] = market.run()
    assert reply["performative"] == "not_understood"
    assert "error" in reply["content"]
    assert len(market.transcript) == 2  # no cfp went out


def test_bidder_alone(net: Net) -> None:
    net.spawn("bidder", "solo", PRICE="7")
    net.send("client", "solo", {"task": "t"}, performative="cfp", reply_with="w")
    net.send("client", "solo", {"task": "t", "price": 7}, performative="accept_proposal")
    net.send("client", "solo", {"task": "t"}, performative="reject_proposal")
    net.send("client", "solo", {"task": "t"}, performative="request")
    replies = net.run()
    assert [(m["performative"], m["content"]) for m in replies] == [
        ("propose", {"price": 7}),
        ("inform", {"done": "t", "price": 7}),
        ("not_understood", {"error": "a bidder answers cfp, accept_proposal and reject_proposal"}),
    ]
    assert replies[0]["in_reply_to"] == "w"
    assert replies[0]["reply_with"] == "solo-p1"


def test_a_refusing_bidder_fails_an_accept(net: Net) -> None:
    net.spawn("bidder", "lazy", REFUSE="1")
    net.send("client", "lazy", {"task": "t"}, performative="accept_proposal")
    [reply] = net.run()
    assert (reply["performative"], reply["content"]) == (
        "failure",
        {"reason": "no proposal was made"},
    )


@pytest.mark.parametrize("price", ["abc", "-5", "1.5"])
def test_bidder_with_a_bad_price_uses_its_name(net: Net, price: str) -> None:
    net.spawn("bidder", "odd", PRICE=price)
    net.send("client", "odd", {"task": "t"}, performative="cfp")
    [reply] = net.run()
    assert reply["content"] == {"price": fnv_price("odd")}
    assert any("PRICE" in text for _, _, text in net.logs)


# --------------------------------------------------------------------------- real runtime


async def test_contract_net_in_the_runtime(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("bidder-a", example("bidder"), env={"PRICE": "30"})
    await deploy("bidder-b", example("bidder"), env={"PRICE": "20"})
    await deploy("bidder-c", example("bidder"), env={"REFUSE": "1"})
    await deploy("manager", example("manager"))
    content = {"op": "start", "task": TASK, "bidders": ["bidder-a", "bidder-b", "bidder-c"]}
    runtime.deliver_nowait(
        "manager", message("manager", content, conversation_id="cn-real", reply_with="r-1")
    )
    final = await recorder.reply()
    assert final["performative"] == "inform"
    assert final["content"] == {"winner": "bidder-b", "price": 20, "proposals": 2, "refusals": 1}
    assert (final["sender"], final["receiver"]) == ("manager", "client")
    assert (final["conversation_id"], final["in_reply_to"]) == ("cn-real", "r-1")
    assert final["protocol"] == "fipa-contract-net"
    # manager: start, 3 answers, the winner's inform; bidder-a: cfp + reject; b: cfp + accept
    expected = {"manager": 5, "bidder-a": 2, "bidder-b": 2, "bidder-c": 1}

    # bidder-a may still be reading its reject_proposal
    async def all_handled() -> dict[str, int] | None:
        handled = {n: runtime.agent_statistics(n).messages_handled for n in runtime.agents()}
        return handled if handled == expected else None

    handled = await eventually(all_handled, within=2.0, what=f"handled {expected}")
    assert handled == expected
    assert recorder.outbox.empty()


async def test_all_refuse_in_the_runtime(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    for name in ("no-1", "no-2"):
        await deploy(name, example("bidder"), env={"REFUSE": "1"})
    await deploy("manager", example("manager"))
    content = {"op": "start", "task": TASK, "bidders": ["no-1", "no-2"]}
    runtime.deliver_nowait("manager", message("manager", content, conversation_id="cn-x"))
    final = await recorder.reply()
    assert (final["performative"], final["content"]) == ("failure", {"reason": "no proposals"})
    assert final["conversation_id"] == "cn-x"


async def test_fipa_request_in_the_runtime(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("responder", example("responder"))
    await deploy("requester", example("requester"))
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"action": "add", "a": 2, "b": 3}, {"outcome": "done", "result": 5}),
        ({"action": "fly"}, {"outcome": "refused", "reason": "unknown action fly"}),
    ]
    for i, (content, _) in enumerate(cases):
        body = {"op": "ask", "responder": "responder", **content}
        runtime.deliver_nowait(
            "requester", message("requester", body, conversation_id=f"fr-{i}", reply_with=f"r{i}")
        )
    finals: dict[str, dict[str, Any]] = {}
    for _ in cases:
        reply = await recorder.reply()
        finals[reply["conversation_id"]] = reply
    for i, (_, outcome) in enumerate(cases):
        assert finals[f"fr-{i}"]["content"] == outcome
        assert finals[f"fr-{i}"]["in_reply_to"] == f"r{i}"
        assert finals[f"fr-{i}"]["protocol"] == "fipa-request"
