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


def _console_commands(doc: Path, heading: str) -> list[list[str]]:
    """The ``$ caxton ...`` lines of the first console block after ``heading`` (comments off)."""
    import shlex

    text = doc.read_text()
    block = text[text.index(heading) :].split("```console\n", 1)[1].split("```", 1)[0]
    lines = [line.removeprefix("$ ") for line in block.splitlines() if line.startswith("$ ")]
    return [shlex.split(line, comments=True) for line in lines]


def test_agents_doc_quick_start_works_on_the_readme_node(tmp_path: Path) -> None:
    """docs/agents.md's quick start, run against a node started as the README starts one."""
    root = Path(__file__).resolve().parents[2]
    commands = _console_commands(root / "docs" / "agents.md", "## Quick start")
    assert commands[0][:2] == ["caxton", "serve"]
    cfg = write_config(tmp_path)
    node = NodeProcess(cfg, args=["serve", "--config", str(cfg), "--examples"])  # as the README
    with node.start(timeout=60):
        server = node.url("api", "")
        assert "echo" in {a["name"] for a in caxton(server, "agent", "list")["agents"]}
        for command in commands[1:]:
            assert command[0] == "caxton"
            proc = subprocess.run(
                [sys.executable, "-m", "caxton", *command[1:], "--server", server],
                capture_output=True, text=True, timeout=60, cwd=root,
            )  # fmt: skip
            assert proc.returncode == 0, (command, proc.stderr)
        assert '"hello": "world"' in proc.stdout  # the last one: the reply

        taken = subprocess.run(
            [sys.executable, "-m", "caxton", "agent", "deploy", "examples/agents/echo.wasm",
             "--name", "echo", "--server", server],
            capture_output=True, text=True, timeout=60, cwd=root,
        )  # fmt: skip
        assert taken.returncode == 1
        assert "already exists" in taken.stderr
        assert "caxton agent upgrade echo FILE" in taken.stderr


def _all_console_commands(doc: Path) -> list[list[str]]:
    """Every ``$ caxton ...`` command of every console block, continuation lines joined."""
    import shlex

    commands: list[list[str]] = []
    for block in doc.read_text().split("```console\n")[1:]:
        pending = ""
        for line in block.split("```", 1)[0].splitlines():
            if line.startswith("$ ") or pending:
                pending += " " + line.removeprefix("$ ").strip()
                if pending.endswith("\\"):
                    pending = pending[:-1]
                    continue
                commands.append(shlex.split(pending, comments=True))
                pending = ""
    return commands


def test_the_examples_readme_works_as_it_says(tmp_path: Path) -> None:
    """examples/agents/README.md deployed every example under its own name: on the README's
    node (which runs them all) each deploy was a 409; it now says to start a node with
    --no-examples, and every command it shows works there, in order."""
    root = Path(__file__).resolve().parents[2]
    doc = root / "examples" / "agents" / "README.md"
    assert "caxton serve --no-examples" in doc.read_text()
    commands = _all_console_commands(doc)
    assert sum(c[:3] == ["caxton", "agent", "deploy"] for c in commands) >= 8
    cfg = write_config(tmp_path)
    node = NodeProcess(cfg, args=["serve", "--config", str(cfg), "--no-examples"])
    replies: list[Any] = []
    with node.start(timeout=60):
        server = node.url("api", "")
        for command in commands:
            assert command[0] == "caxton"
            if command[1:3] == ["conversation", "show"]:  # the sample's id: use the real one
                command = [*command[:3], replies[-1]["conversation_id"]]
            proc = subprocess.run(
                [sys.executable, "-m", "caxton", *command[1:], "--server", server,
                 "--output", "json"],
                capture_output=True, text=True, timeout=90, cwd=root,
            )  # fmt: skip
            assert proc.returncode == 0, (command, proc.stderr)
            if command[1:3] == ["message", "send"]:
                replies.append(json.loads(proc.stdout))
        assert node.stop()[0] == 0
    contents = [r["content"] for r in replies]
    assert {"hello": "world"} in contents
    assert "HELLO" in contents
    assert {"done": 1000} in contents
    assert {"outcome": "done", "result": 5} in contents
    assert {"outcome": "refused", "reason": "unknown action fly"} in contents
    assert {"winner": "bidder-b", "price": 20, "proposals": 2, "refusals": 1} in contents
