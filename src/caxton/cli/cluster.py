"""`caxton cluster members|remove`: the members of the cluster as a node sees them."""

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
    """Show and manage the members of the cluster (through the HTTP API)."""


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
