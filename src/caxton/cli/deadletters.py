"""`caxton dead-letters list|redrive`: messages that could not be delivered or handled."""

from __future__ import annotations

import click

from caxton.cli._client import client_options, page_options
from caxton.cli._output import echo_json, human_time, print_table
from caxton.cli.message import call

__all__ = ["dead_letters"]

PREFIX = "/api/v1/dead-letters"


@click.group("dead-letters")
def dead_letters() -> None:
    """List and redrive dead letters (through the HTTP API)."""


@dead_letters.command("list")
@page_options
@client_options
def list_(offset: int, limit: int, server: str, token: str | None, output: str) -> None:
    """List dead letters, oldest first, with the reason (in a cluster: of every node, with a
    NODE column; redrive a letter through its node's API, its id is that node's)."""
    page = call(server, token, "GET", PREFIX, query={"offset": str(offset), "limit": str(limit)})
    if output == "json":
        echo_json(page)
        return
    letters = page["dead_letters"]
    if not letters:
        click.echo("no dead letters" if page["total"] == 0 else f"none at offset {offset}")
        return
    clustered = any(d.get("node") is not None for d in letters)  # ids are per node
    print_table(
        [
            "ID",
            *(["NODE"] if clustered else []),
            *["TIME", "REASON", "FROM", "TO", "PERFORMATIVE", "MESSAGE", "REDRIVEN"],
        ],
        [
            [
                d["id"],
                *([d.get("node")] if clustered else []),
                human_time(d.get("created_at")),
                d.get("reason"),
                d.get("sender"),
                d.get("receiver"),
                (d.get("message") or {}).get("performative"),
                d.get("message_id"),
                human_time(d["redriven_at"]) if d.get("redriven_at") else "-",
            ]
            for d in letters
        ],
    )
    if offset > 0 or len(letters) < page["total"]:
        click.echo(f"{offset + 1}-{offset + len(letters)} of {page['total']} dead letters")


@dead_letters.command("redrive")
@click.argument("dead_letter_id", metavar="ID", type=click.IntRange(min=1))
@click.option(
    "--node",
    metavar="NODE",
    default=None,
    help="Cluster: the node that keeps the dead letter (the NODE column of list).",
)
@client_options
def redrive(
    dead_letter_id: int, node: str | None, server: str, token: str | None, output: str
) -> None:
    """Deliver dead letter ID's message again to its receiver (same message id)."""
    query = None if node is None else {"node": node}
    answer = call(server, token, "POST", f"{PREFIX}/{dead_letter_id}/redrive", query=query)
    if output == "json":
        echo_json(answer)
        return
    receivers = ", ".join(answer.get("receivers") or [])
    click.echo(
        f"redriven dead letter {dead_letter_id}: message {answer.get('message_id')} "
        f"to {receivers} (conversation {answer.get('conversation_id')})"
    )
