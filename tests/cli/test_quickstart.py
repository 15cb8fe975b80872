"""The README's quick start: a node with the examples deployed, talked to from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.slow


def caxton(server: str, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "caxton", *args, "--server", server, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_quick_start_agents_answer_and_negotiate(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    node = NodeProcess(cfg, args=["serve", "--config", str(cfg), "--examples"])
    with node.start(timeout=60):
        server = node.url("api", "")
        names = {a["name"] for a in caxton(server, "agent", "list")["agents"]}
        assert {"echo", "counter", "shout", "manager", "bidder-a", "requester"} <= names

        reply = caxton(
            server, "message", "send", "--to", "echo", "--performative", "request",
            "--content", '"hello"', "--wait", "5s",
        )  # fmt: skip
        assert reply["content"] == "hello"
        assert reply["performative"] == "inform"

        shout = caxton(
            server, "message", "send", "--to", "shout", "-p", "request", "--content", '"hi"',
            "--wait", "5s",
        )  # fmt: skip
        assert shout["content"] == "HI"

        asked = caxton(
            server, "message", "send", "--to", "requester", "-p", "request", "--wait", "5s",
            "--content", '{"op":"ask","responder":"responder","action":"add","a":2,"b":3}',
        )  # fmt: skip
        assert asked["content"] == {"outcome": "done", "result": 5}

        start = {
            "op": "start",
            "task": "build-widget",
            "bidders": ["bidder-a", "bidder-b", "bidder-c"],
        }
        won = caxton(
            server, "message", "send", "--to", "manager", "-p", "request", "--wait", "5s",
            "--content", json.dumps(start),
        )  # fmt: skip
        assert won["content"]["winner"] == "bidder-b"
        assert won["content"]["price"] == 20

        shown = caxton(server, "conversation", "show", won["conversation_id"])
        steps = [(m["sender"], m["receiver"], m["performative"]) for m in shown["messages"]]
        assert steps[0][1:] == ("manager", "request")
        assert sorted(s for s in steps if s[2] == "cfp") == [
            ("manager", f"bidder-{x}", "cfp") for x in "abc"
        ]
        assert ("bidder-c", "manager", "refuse") in steps
        assert ("manager", "bidder-b", "accept_proposal") in steps
        assert ("manager", "bidder-a", "reject_proposal") in steps
        assert steps[-2] == ("bidder-b", "manager", "inform")
        assert steps[-1][:2] == ("manager", steps[0][0])
        assert steps[-1][2] == "inform"
        # each bidder answers only after its cfp
        for bidder in ("bidder-a", "bidder-b", "bidder-c"):
            cfp = steps.index(("manager", bidder, "cfp"))
            answer = next(i for i, s in enumerate(steps) if s[0] == bidder)
            assert cfp < answer
        assert node.stop()[0] == 0
