"""`caxton debug --agent-id ID` (or `caxton debug NAME`, `caxton debug agent NAME`): one
agent's state for troubleshooting; `caxton debug bundle FILE`: a tarball for a bug report
(`caxton.cli.bundle`).

Sections of the agent view: the agent (state, version, kind, limits, memory, mailbox,
counters), last errors, its latest dead letters, its recent messages and the tail of its log.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from caxton.cli._client import client_options
from caxton.cli._output import echo_json, human_size, human_time, print_fields, print_table
from caxton.cli.bundle import bundle
from caxton.cli.message import call, content_text

__all__ = ["debug"]


def _names(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def _section(title: str) -> None:
    click.echo("")
    click.echo(f"== {title}")


def _hibernation(value: Any) -> str:
    if not isinstance(value, dict):
        return "-"  # a node that does not say
    return "possible" if value.get("possible") else str(value.get("reason"))


def _summary(view: dict[str, Any]) -> None:
    limits, memory, mailbox = view["limits"], view["memory"], view["mailbox"]
    counters = view.get("counters") or {}
    fuel = limits.get("fuel")
    print_fields(
        [
            ("name", view.get("name")),
            ("state", view.get("state")),
            ("kind", view.get("kind")),
            ("version", view.get("version")),
            (
                "memory",
                f"{human_size(memory.get('used_bytes'))} of "
                f"{human_size(memory.get('limit_bytes'))}",
            ),
            ("mailbox", f"{mailbox.get('depth')} of {mailbox.get('capacity')}"),
            ("timeout", f"{limits.get('execution_timeout_seconds')}s"),
            ("fuel", "-" if fuel is None else fuel),
            ("messages handled", counters.get("messages_handled")),
            ("failures", counters.get("failures")),
            ("restarts", counters.get("restarts")),
            ("last error", view.get("last_error")),
            ("last active", human_time(view.get("last_active"))),
            ("hibernation", _hibernation(view.get("hibernation"))),
        ]
    )


def _show(view: dict[str, Any]) -> None:
    _summary(view)
    _section("last errors")
    errors = view.get("last_errors") or []
    if not errors:
        click.echo("none")
    for err in errors:
        click.echo(f"{human_time(err['time'])} {err['source']:<11} {err['text']}")
    _section("dead letters")
    letters = view.get("dead_letters") or []
    if letters:
        print_table(
            ["ID", "TIME", "REASON", "FROM", "TO", "MESSAGE"],
            [
                [
                    d["id"],
                    human_time(d["created_at"]),
                    d["reason"],
                    d.get("sender"),
                    d.get("receiver"),
                    d.get("message_id"),
                ]
                for d in letters
            ],
        )
    else:
        click.echo("none")
    recent = view.get("recent_messages") or {}
    _section("recent messages (from and to the agent, oldest first)")
    messages = recent.get("messages") or []
    if messages:
        print_table(
            ["TIME", "FROM", "TO", "PERFORMATIVE", "CONVERSATION", "CONTENT"],
            [
                [
                    human_time(m.get("created_at")),
                    m.get("sender"),
                    _names(m.get("receiver")),
                    m.get("performative"),
                    m.get("conversation_id"),
                    content_text(m.get("content"), 40),
                ]
                for m in messages
            ],
        )
    else:
        where = (
            "the message history"
            if recent.get("complete")
            else (f"the last {recent.get('scanned')} messages of the history")
        )
        click.echo(f"none in {where}")
    _section("log")
    lines = view.get("logs") or []
    if not lines:
        click.echo("no log lines")
    for line in lines:
        click.echo(f"{human_time(line['time'])} {line['level']:<5} {line['text']}")


class _DebugGroup(click.Group):
    """`caxton debug` with a subcommand, or the agent view's arguments directly: anything that
    is not a subcommand's name (``echo``, ``--agent-id echo``) goes to `debug agent`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first not in self.commands and first not in ("-h", "--help"):
            args = ["agent", *args]
        return super().parse_args(ctx, args)


@click.group("debug", cls=_DebugGroup)
def debug() -> None:
    """Troubleshooting: one agent's state (`caxton debug NAME`), or a bundle for a bug report
    (`caxton debug bundle FILE`)."""


debug.add_command(bundle)


@debug.command("agent")
@click.argument("name", required=False)
@click.option("--agent-id", "agent_id", metavar="ID", help="The agent (its name).")
@click.option(
    "--messages",
    type=click.IntRange(0, 100),
    default=20,
    show_default=True,
    help="Recent messages from and to the agent to show.",
)
@click.option(
    "--logs",
    type=click.IntRange(0, 10_000),
    default=50,
    show_default=True,
    help="Last log lines to show.",
)
@client_options
def agent(
    name: str | None,
    agent_id: str | None,
    messages: int,
    logs: int,
    server: str,
    token: str | None,
    output: str,
) -> None:
    """Show one agent's state, errors, dead letters, recent messages and log tail (also
    `caxton debug NAME` and `caxton debug --agent-id ID`)."""
    if (name is None) == (agent_id is None):
        raise click.UsageError("give the agent as --agent-id ID or as NAME (one of them)")
    target = agent_id or name
    assert target is not None
    path = f"/api/v1/agents/{urllib.parse.quote(target, safe='')}/debug"
    view = call(server, token, "GET", path, query={"messages": str(messages), "logs": str(logs)})
    if output == "json":
        echo_json(view)
    else:
        _show(view)
