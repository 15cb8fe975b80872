"""`caxton message|conversation|dead-letters|debug` against a real node process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from caxton.cli import cli
from tests.nodeproc import NodeProcess, write_config
from tests.support import EXAMPLES, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("message-cli")
    with NodeProcess(write_config(directory)).start() as node:
        url = node.url("api", "")
        for name in ("echo", "pong"):
            result = run(url, "agent", "deploy", str(EXAMPLES / f"{name}.wasm"), "--name", name)
            assert result.exit_code == 0, result.stderr
        yield url


def run(server: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env={"CAXTON_SERVER": server})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_json(server: str, *args: str) -> Any:
    result = run(server, *args, "--output", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def send(server: str, *args: str) -> Result:
    return run(server, "message", "send", *args)


def test_send_and_wait_prints_the_reply(server: str) -> None:
    result = send(
        server, "--to", "echo", "-p", "request", "--content", '{"hello":"world"}',
        "--reply-with", "r1", "--sender", "cli-user", "--wait", "5s",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "from" in out
    assert "echo" in out
    assert "inform" in out
    assert '"hello": "world"' in out
    assert "cli-user" in out

    body = run_json(
        server, "message", "send", "--to", "echo", "-p", "request", "--content", "[1,2]",
        "--wait", "5s",
    )  # fmt: skip
    assert body["content"] == [1, 2]
    assert body["performative"] == "inform"
    assert body["sender"] == "echo"
    assert body["conversation_id"]


def test_send_without_wait_then_conversation_show(server: str) -> None:
    body = run_json(
        server, "message", "send", "--to", "echo", "-p", "inform", "--content", '"hi"',
        "--conversation", "cli-conv-1",
    )  # fmt: skip
    assert body["conversation_id"] == "cli-conv-1"
    assert body["message_id"]

    def both_stored() -> dict[str, Any] | None:
        page = run_json(server, "conversation", "show", "cli-conv-1")
        return page if page["total"] == 2 else None

    page = wait_until(both_stored, 5, what="the request and the reply were stored")
    assert [m["sender"] for m in page["messages"]] == [body["sender"], "echo"]
    table = run(server, "conversation", "show", "cli-conv-1")
    assert table.exit_code == 0, table.stderr
    assert "PERFORMATIVE" in table.stdout
    assert '"hi"' in table.stdout
    second = run(server, "conversation", "show", "cli-conv-1", "--offset", "1", "--limit", "1")
    assert "2-2 of 2 messages" in second.stdout
    missing = run(server, "conversation", "show", "no-such-conversation")
    assert missing.exit_code == 1
    assert "no messages in conversation" in missing.stderr


def test_wait_timeout_exits_1(server: str) -> None:
    result = send(server, "--to", "pong", "-p", "inform", "--wait", "300ms")
    assert result.exit_code == 1
    assert "no reply" in result.stderr
    assert "message_id" in result.stderr


def test_content_must_be_json(server: str) -> None:
    result = send(server, "--to", "echo", "-p", "inform", "--content", "hello")
    assert result.exit_code == 2
    assert "quote it" in result.stderr
    assert "'\"hello\"'" in result.stderr
    bad = send(server, "--to", "echo", "-p", "shout")
    assert bad.exit_code == 1
    assert "performative" in bad.stderr
    wait = send(server, "--to", "echo", "-p", "inform", "--wait", "soon")
    assert wait.exit_code == 2


def test_dead_letters_list_and_redrive(server: str) -> None:
    body = run_json(server, "message", "send", "--to", "ghost-cli", "-p", "inform")

    def dead_lettered() -> list[dict[str, Any]]:
        page = run_json(server, "dead-letters", "list", "--limit", "1000")
        return [d for d in page["dead_letters"] if d["message_id"] == body["message_id"]]

    mine = wait_until(dead_lettered, 5, what="the message was dead-lettered")
    (letter,) = mine
    table = run(server, "dead-letters", "list", "--limit", "1000")
    assert "unknown_receiver" in table.stdout
    assert "ghost-cli" in table.stdout
    deployed = run(server, "agent", "deploy", str(EXAMPLES / "echo.wasm"), "--name", "ghost-cli")
    assert deployed.exit_code == 0, deployed.stderr
    result = run(server, "dead-letters", "redrive", str(letter["id"]))
    assert result.exit_code == 0, result.stderr
    assert f"redriven dead letter {letter['id']}" in result.stdout
    again = run(server, "dead-letters", "redrive", str(letter["id"]))
    assert again.exit_code == 1
    unknown = run(server, "dead-letters", "redrive", "987654")
    assert unknown.exit_code == 1
    assert "no dead letter" in unknown.stderr


def test_debug_sections(server: str) -> None:
    first = run(server, "debug", "--agent-id", "echo")
    assert first.exit_code == 0, first.stderr
    send(server, "--to", "echo", "-p", "request", "--content", '{"dbg":1}', "--wait", "5s")
    result = run(server, "debug", "echo")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for section in ("state", "mailbox", "memory", "== last errors", "== dead letters",
                    "== recent messages", "== log"):  # fmt: skip
        assert section in out
    assert '{"dbg":1}' in out
    assert [line.split() for line in out.splitlines() if line.startswith("hibernation")] == [
        ["hibernation", "possible"]
    ]
    view = run_json(server, "debug", "--agent-id", "echo")
    assert view["name"] == "echo"
    assert view["mailbox"]["capacity"] > 0
    assert run(server, "debug").exit_code == 2
    assert run(server, "debug", "--agent-id", "nobody").exit_code == 1


def test_send_without_wait_prints_the_ids(server: str) -> None:
    result = send(server, "--to", "echo", "-p", "inform", "--conversation", "cli-ids-1")
    assert result.exit_code == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert fields["conversation"] == "cli-ids-1"
    assert fields["receivers"] == "echo"
    assert fields["sender"].startswith("client-")

    def stored() -> dict[str, Any] | None:
        page = run_json(server, "conversation", "show", "cli-ids-1")
        return page if page["total"] else None

    page = wait_until(stored, 5, what="the message was stored")
    assert page["messages"][0]["message_id"] == fields["message"]


def test_a_failure_or_not_understood_reply_exits_5(server: str) -> None:
    failed = send(server, "--to", "nobody-cli", "-p", "request", "--wait", "5s")
    assert failed.exit_code == 5, failed.stderr
    assert "failure" in failed.stdout  # the reply is printed all the same
    assert "unknown_receiver" in failed.stdout
    assert "replied failure" in failed.stderr
    as_json = run(server, "message", "send", "--to", "nobody-cli", "-p", "request",
                  "--wait", "5s", "-o", "json")  # fmt: skip
    assert as_json.exit_code == 5
    assert json.loads(as_json.stdout)["performative"] == "failure"
    deployed = run(server, "agent", "deploy", str(EXAMPLES / "ping.wasm"), "--name", "ping-cli")
    assert deployed.exit_code == 0, deployed.stderr
    puzzled = send(server, "--to", "ping-cli", "-p", "request", "--content", '"?"', "--wait", "5s")
    assert puzzled.exit_code == 5, puzzled.stderr
    assert "not_understood" in puzzled.stdout
    fine = send(server, "--to", "echo", "-p", "request", "--wait", "5s")
    assert fine.exit_code == 0, fine.stderr


def test_debug_shows_earlier_messages_on_its_first_call(server: str) -> None:
    deployed = run(server, "agent", "deploy", str(EXAMPLES / "echo.wasm"), "--name", "dbg-first")
    assert deployed.exit_code == 0, deployed.stderr
    sent = send(server, "--to", "dbg-first", "-p", "request", "--content", '{"before":1}',
                "--wait", "5s")  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    first = run(server, "debug", "--agent-id", "dbg-first")
    assert first.exit_code == 0, first.stderr
    section = first.stdout.split("== recent messages")[1].split("== log")[0]
    assert section.count('{"before":1}') == 2  # the request and echo's reply
    assert "none" not in section
