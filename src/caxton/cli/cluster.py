"""`caxton cluster members|remove|conflicts`: the members of the cluster as a node sees them,
and the agent names it found hosted on two nodes."""

from __future__ import annotations

import urllib.parse

import click

from caxton.cli._client import client_options
from caxton.cli._output import echo_json, human_time, print_table
from caxton.cli.message import call

__all__ = ["cluster"]

PREFIX = "/api/v1/cluster/members"


@click.group("cluster")
def cluster() -> None:
    """Show and manage the members of the cluster, show its conflicts (through the HTTP
    API)."""


@cluster.command("members")
@client_options
def members(server: str, token: str | None, output: str) -> None:
    """List every member with its addresses, state, agents and last change (* = this node)."""
    body = call(server, token, "GET", PREFIX)
    if output == "json":
        echo_json(body)
        return
    print_table(
        ["NAME", "STATE", "AGENTS", "API", "CLUSTER", "LAST CHANGE"],
        [
            [
                m["name"] + (" *" if m.get("self") else ""),
                m["state"],
                m["agents"],
                m["api_address"],
                m.get("cluster_address"),
                human_time(m.get("last_change")),
            ]
            for m in body["members"]
        ],
    )
    if not body.get("cluster_enabled", True):
        click.echo("this node is not in a cluster ([coordination] cluster_enabled = false)")


@cluster.command("remove")
@click.argument("name")
@client_options
def remove(name: str, server: str, token: str | None, output: str) -> None:
    """Forget the dead or left member NAME for good (it may join again when restarted)."""
    body = call(server, token, "DELETE", f"{PREFIX}/{urllib.parse.quote(name, safe='')}")
    if output == "json":
        echo_json(body)
    else:
        click.echo(f"removed member {name} (it was {body['state']})")


@cluster.command("conflicts")
@client_options
def conflicts(server: str, token: str | None, output: str) -> None:
    """List the agent names found deployed on two nodes: who keeps each, and what became of
    the other copy (the first deploy wins; the loser's copy is stopped and kept stored)."""
    body = call(server, token, "GET", "/api/v1/cluster/conflicts")
    if output == "json":
        echo_json(body)
        return
    found = body["conflicts"]
    if not found:
        click.echo("no conflicts")
        return
    print_table(
        ["NAME", "WINNER", "LOSER", "WINNER DEPLOYED", "LOSER DEPLOYED", "SEEN", "ACTION"],
        [
            [
                c["name"],
                c["winner"],
                c["loser"],
                human_time(c.get("winner_deployed_at")),
                human_time(c.get("loser_deployed_at")),
                human_time(c.get("at")),
                c.get("action"),
            ]
            for c in found
        ],
    )
