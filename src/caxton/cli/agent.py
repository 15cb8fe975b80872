"""`caxton agent ...`: deploy and manage agents on a running node through its HTTP API."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from caxton.cli._client import client_options, make_client, page_options
from caxton.cli._common import EXIT_CONFIG, fail
from caxton.cli._output import (
    api_errors,
    echo_json,
    human_size,
    human_time,
    print_fields,
    print_table,
)
from caxton.config import parse_size

__all__ = ["agent"]

PREFIX = "/api/v1/agents"
F = TypeVar("F", bound=Callable[..., Any])


def _path(name: str, suffix: str = "") -> str:
    return f"{PREFIX}/{urllib.parse.quote(name, safe='')}{suffix}"


def _env_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    for pair in values:
        key, sep, _ = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", ctx, param)
    return list(values)


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_size(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _node_option(help_text: str) -> Callable[[F], F]:
    return click.option("--node", metavar="NODE", default=None, help=help_text)


_COLUMNS = ("STATE", "KIND", "VERSION", "HANDLED", "FAILURES", "MEMORY", "LAST ACTIVE")
_ON_NODE = "Cluster: the copy on NODE (the losing copy of a conflict), whoever hosts NAME."


def _on(node: str | None, query: dict[str, str] | None = None) -> dict[str, str] | None:
    """The query of a call for one agent, with ``node`` when one was asked for."""
    if node is None:
        return query
    return {**(query or {}), "node": node}


def _call(server: str, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; an API error is printed and exits 1."""
    with api_errors():
        _, body = make_client(server, token).request(method, path, **kwargs)
    return body


def _upload(server: str, token: str | None, method: str, path: str, file: Path) -> Any:
    """Send ``file`` as an ``application/wasm`` body (``path`` may carry a query)."""
    data = file.read_bytes()
    return _call(server, token, method, path, data=data, content_type="application/wasm")


#: How `show` names the keys of ``limits`` (others are shown as they come).
_LIMIT_NAMES = {
    "memory_bytes": "memory",
    "execution_timeout_seconds": "timeout",
    "mailbox_capacity": "mailbox",
}


def _limits(info: dict[str, Any]) -> str:
    parts = []
    for key, value in (info.get("limits") or {}).items():
        if value is None:
            continue
        if key == "memory_bytes":
            value = human_size(value)
        elif key == "execution_timeout_seconds":
            value = f"{value:g}s"
        parts.append(f"{_LIMIT_NAMES.get(key, key)} {value}")
    return ", ".join(parts) or "-"


def _show(info: dict[str, Any]) -> None:
    counters = info.get("counters") or {}
    versions = info.get("versions") or []
    numbers = [v.get("version", v) if isinstance(v, dict) else v for v in versions]
    size = human_size(info.get("module_size"))
    grants = info.get("grants") or {}
    print_fields(
        [
            ("name", info.get("name")),
            *([("node", info["node"])] if info.get("node") is not None else []),
            ("state", info.get("state")),
            ("kind", info.get("kind")),
            ("version", info.get("version")),
            ("versions", ", ".join(str(n) for n in numbers) or "-"),
            ("module", f"sha256:{info.get('module_sha256')} ({size})"),
            ("env", ", ".join(f"{k}={v}" for k, v in (info.get("env") or {}).items()) or "-"),
            ("limits", _limits(info)),
            ("grants", ", ".join(f"{k}={v}" for k, v in grants.items() if v) or "-"),
            ("messages handled", counters.get("messages_handled")),
            ("failures", counters.get("failures")),
            ("restarts", counters.get("restarts")),
            ("last error", info.get("last_error")),
            ("memory", human_size(info.get("memory_bytes"))),
            ("mailbox", info.get("mailbox_depth")),
            ("created", human_time(info.get("created_at"))),
            ("updated", human_time(info.get("updated_at"))),
            ("last active", human_time(info.get("last_active"))),
        ]
    )


def _one_line(info: dict[str, Any], verb: str, output: str) -> None:
    """The API's answer as JSON, or one line saying what happened."""
    if output == "json":
        echo_json(info)
    else:
        click.echo(f"{verb} {info.get('name')}: version {info.get('version')}, {info.get('state')}")


@click.group()
def agent() -> None:
    """Deploy and manage agents on a running node (through its HTTP API)."""


@agent.command("deploy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The agent's name: ^[a-z][a-z0-9-]{0,62}$.")
@click.option("--env", "-e", multiple=True, metavar="K=V", callback=_env_option, help="Repeatable.")
@click.option("--memory", metavar="SIZE", callback=_size_option, help='Memory limit ("64MB").')
@click.option("--fuel", type=click.IntRange(min=1), help="Fuel per message.")
@click.option("--grant-dir", is_flag=True, help="Give the agent a private data directory.")
@_node_option('Cluster: deploy on NODE, or "auto" for the least-loaded live node.')
@client_options
def deploy(
    file: Path,
    name: str,
    env: list[str],
    memory: str | None,
    fuel: int | None,
    grant_dir: bool,
    node: str | None,
    server: str,
    token: str | None,
    output: str,
) -> None:
    """Deploy FILE (a .wasm module) as a new agent."""
    query = [("name", name), *(("env", pair) for pair in env)]
    if memory is not None:
        query.append(("memory", memory))
    if fuel is not None:
        query.append(("fuel", str(fuel)))
    if grant_dir:
        query.append(("grant_dir", "true"))
    if node is not None:
        query.append(("node", node))
    info = _upload(server, token, "POST", f"{PREFIX}?{urllib.parse.urlencode(query)}", file)
    _one_line(info, "deployed", output)


@agent.command("list")
@page_options
@_node_option("Cluster: only the agents of NODE.")
@client_options
def list_(
    offset: int, limit: int, node: str | None, server: str, token: str | None, output: str
) -> None:
    """List deployed agents (in a cluster: of every node, with a NODE column)."""
    query = {"offset": str(offset), "limit": str(limit)}
    page = _call(server, token, "GET", PREFIX, query=_on(node, query))
    if output == "json":
        echo_json(page)
        return
    agents = page["agents"]
    if not agents:
        click.echo("no agents" if page["total"] == 0 else f"no agents at offset {offset}")
        return
    clustered = any(a.get("node") is not None for a in agents)
    print_table(
        ["NAME", *(["NODE"] if clustered else []), *_COLUMNS],
        [
            [
                a.get("name"),
                *([a.get("node")] if clustered else []),
                a.get("state"),
                a.get("kind"),
                a.get("version"),
                (a.get("counters") or {}).get("messages_handled"),
                (a.get("counters") or {}).get("failures"),
                human_size(a.get("memory_bytes")),
                human_time(a.get("last_active")),
            ]
            for a in agents
        ],
    )
    if offset > 0 or len(agents) < page["total"]:
        click.echo(f"{offset + 1}-{offset + len(agents)} of {page['total']} agents")


@agent.command("show")
@click.argument("name")
@_node_option(_ON_NODE)
@client_options
def show(name: str, node: str | None, server: str, token: str | None, output: str) -> None:
    """Show one agent: state, version, limits, counters (and its node in a cluster)."""
    info = _call(server, token, "GET", _path(name), query=_on(node))
    if output == "json":
        echo_json(info)
    else:
        _show(info)


@agent.command("upgrade")
@click.argument("name")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--version", type=click.IntRange(min=1), help="Roll back to this stored version.")
@_node_option(_ON_NODE)
@client_options
def upgrade(
    name: str,
    file: Path | None,
    version: int | None,
    node: str | None,
    server: str,
    token: str | None,
    output: str,
) -> None:
    """Upgrade NAME to the module in FILE, or roll back with --version N."""
    if (file is None) == (version is None):
        raise click.UsageError("give either FILE (upgrade) or --version N (rollback), not both")
    if version is not None:
        info = _call(server, token, "PUT", _path(name), query=_on(node, {"version": str(version)}))
    else:
        assert file is not None
        path = (
            _path(name)
            if node is None
            else f"{_path(name)}?{urllib.parse.urlencode({'node': node})}"
        )
        info = _upload(server, token, "PUT", path, file)
    _one_line(info, "upgraded", output)


@agent.command("rollback")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_node_option(_ON_NODE)
@client_options
def rollback(
    name: str, version: int, node: str | None, server: str, token: str | None, output: str
) -> None:
    """Run NAME's stored VERSION again (kept from earlier deploys and upgrades)."""
    info = _call(server, token, "PUT", _path(name), query=_on(node, {"version": str(version)}))
    _one_line(info, "rolled back", output)


def _lifecycle(
    action: str, name: str, node: str | None, server: str, token: str | None, output: str
) -> None:
    info = _call(server, token, "POST", _path(name, f"/{action}"), query=_on(node))
    if output == "json":
        echo_json(info)
    else:
        click.echo(f"{info.get('name')}: {info.get('state')}")


@agent.command("stop")
@click.argument("name")
@_node_option(_ON_NODE)
@client_options
def stop(name: str, node: str | None, server: str, token: str | None, output: str) -> None:
    """Stop NAME (the message it is handling finishes first)."""
    _lifecycle("stop", name, node, server, token, output)


@agent.command("start")
@click.argument("name")
@_node_option(_ON_NODE)
@client_options
def start(name: str, node: str | None, server: str, token: str | None, output: str) -> None:
    """Start NAME again after a stop or a failure."""
    _lifecycle("start", name, node, server, token, output)


@agent.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_node_option(_ON_NODE)
@client_options
def remove(
    name: str, yes: bool, node: str | None, server: str, token: str | None, output: str
) -> None:
    """Stop NAME and remove it with its module versions and stored data."""
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to remove {name} without --yes (stdin is not a terminal)", EXIT_CONFIG)
        click.confirm(f"Remove agent {name} and its stored data?", abort=True)
    _call(server, token, "DELETE", _path(name), query=_on(node))
    if output == "json":
        echo_json({"name": name, "removed": True})
    else:
        click.echo(f"removed {name}")


@agent.command("logs")
@click.argument("name")
@click.option(
    "-n",
    "--lines",
    "n",
    type=click.IntRange(0, 10_000),
    default=50,
    show_default=True,
    help="How many of the last lines.",
)
@_node_option(_ON_NODE)
@client_options
def logs(name: str, n: int, node: str | None, server: str, token: str | None, output: str) -> None:
    """Print NAME's recent log lines, oldest first."""
    body = _call(server, token, "GET", _path(name, "/logs"), query=_on(node, {"n": str(n)}))
    if output == "json":
        echo_json(body)
        return
    if not body["lines"]:
        click.echo(f"no log lines for {name}")
    for line in body["lines"]:
        click.echo(f"{human_time(line['time'])} {line['level']:<5} {line['text']}")
