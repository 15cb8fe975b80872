"""`caxton conversation show ID`: a conversation's messages in order."""

from __future__ import annotations

import urllib.parse

import click

from caxton.cli._client import client_options, page_options
from caxton.cli._output import echo_json, human_time, print_table
from caxton.cli.message import call, content_text

__all__ = ["conversation"]


@click.group()
def conversation() -> None:
    """Inspect conversations (through the HTTP API)."""


@conversation.command("show")
@click.argument("conversation_id", metavar="ID")
@page_options
@client_options
def show(
    conversation_id: str, offset: int, limit: int, server: str, token: str | None, output: str
) -> None:
    """Show the messages of conversation ID, in order (in a cluster: gathered from every node,
    with a NODE column, the node that keeps each message)."""
    path = f"/api/v1/conversations/{urllib.parse.quote(conversation_id, safe='')}"
    page = call(server, token, "GET", path, query={"offset": str(offset), "limit": str(limit)})
    if output == "json":
        echo_json(page)
        return
    messages = page["messages"]
    if not messages:
        click.echo(f"no messages at offset {offset} ({page['total']} in all)")
        return
    clustered = any(m.get("node") is not None for m in messages)
    print_table(
        [
            "#",
            *(["NODE"] if clustered else []),
            *["TIME", "FROM", "TO", "PERFORMATIVE", "IN REPLY TO", "CONTENT"],
        ],
        [
            [
                offset + i + 1,
                *([m.get("node")] if clustered else []),
                human_time(m.get("created_at")),
                m.get("sender"),
                ", ".join(m["receiver"])
                if isinstance(m.get("receiver"), list)
                else m.get("receiver"),
                m.get("performative"),
                m.get("in_reply_to"),
                content_text(m.get("content")),
            ]
            for i, m in enumerate(messages)
        ],
    )
    if offset > 0 or len(messages) < page["total"]:
        click.echo(f"{offset + 1}-{offset + len(messages)} of {page['total']} messages")
    if page.get("missing_nodes"):
        click.echo(f"not in this page (no answer in time): {', '.join(page['missing_nodes'])}")
