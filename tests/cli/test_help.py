"""Every option of every command says what it does in ``--help`` (a newcomer reads nothing
else): `caxton agent list --help` showed ``--offset`` and ``--limit`` with no words at all."""

from __future__ import annotations

import click
import pytest

from caxton.cli import cli


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{ctx.info_name} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, click.Context(command, info_name=path, parent=ctx))
    return found


COMMANDS = _commands(cli, click.Context(cli, info_name="caxton"))


def test_every_command_is_listed() -> None:
    names = {path for path, _ in COMMANDS}
    assert {"caxton serve", "caxton agent list", "caxton debug", "caxton backup create"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_has_help(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no description"
    silent = [
        "/".join(p.opts)
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert not silent, f"{path}: options without help: {silent}"
