"""Output shared by the client commands: rich tables for people, JSON for scripts, errors.

Every client command prints either a human view (tables, one-line confirmations) or, with
``--output json``, exactly one JSON document on stdout. API errors go to stderr as
``caxton: <the server's message>`` plus the details that help (an agent's log lines, the field
at fault, a limit), and the command exits 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from caxton.cli._client import BAD_SERVER, ApiFailure
from caxton.cli._common import EXIT_CONFIG, EXIT_FAILED

__all__ = [
    "api_errors",
    "console",
    "echo_json",
    "human_size",
    "human_time",
    "print_fields",
    "print_table",
]


#: Width of tables written to a pipe or file (no terminal to fit; wrapping would only hurt).
PIPE_WIDTH = 200


def console() -> Console:
    """A console on the current stdout (no markup: agent names and logs are printed as is)."""
    out = Console(markup=False, highlight=False, emoji=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def _print(table: Table) -> None:
    out = console()
    with out.capture() as captured:
        out.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def echo_json(data: Any) -> None:
    """``data`` as one indented JSON document."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _cell(value: Any) -> Text:
    if value is None:
        return Text("-")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, separators=(",", ":")))
    return Text(str(value))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A borderless table with a header row."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    _print(table)


def print_fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """Two columns: a field name and its value."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), _cell(value))
    _print(table)


def human_size(value: Any) -> str:
    """Bytes as ``"1.5 MiB"``; anything not a number as is (``"-"`` for None)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


def human_time(value: Any) -> str:
    """An RFC 3339 time or epoch seconds as local ``YYYY-MM-DD HH:MM:SS``; ``"-"`` for None."""
    if value is None:
        return "-"
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value).astimezone()
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _print_details(details: dict[str, Any]) -> None:
    for key, value in details.items():
        if key == "logs" and isinstance(value, list):
            click.echo("agent log:" if value else "agent log: (empty)", err=True)
            for line in value:
                if isinstance(line, dict):
                    level, text = line.get("level", ""), line.get("text", "")
                    click.echo(f"  {level:<5} {text}", err=True)
                else:
                    click.echo(f"  {line}", err=True)
        elif isinstance(value, dict | list):
            click.echo(f"  {key}: {json.dumps(value)}", err=True)
        else:
            click.echo(f"  {key}: {value}", err=True)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn an `ApiFailure` into ``caxton: <message>`` (+ details) on stderr and exit 1.

    A ``--server`` that is not a URL is bad usage: exit 2.
    """
    try:
        yield
    except ApiFailure as exc:
        click.echo(f"caxton: {exc.message}", err=True)
        _print_details(exc.details)
        raise SystemExit(EXIT_CONFIG if exc.code == BAD_SERVER else EXIT_FAILED) from None
