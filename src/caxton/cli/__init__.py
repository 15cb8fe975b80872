"""The `caxton` command line: one entry point for the server, local tools and API clients.

Exit codes a script can trust:

====  =====================================================================
0     success
1     the operation failed (the message says why)
2     bad usage or a configuration error (names the file and the key)
3     a listener could not bind (port in use, not permitted), the cluster's
      ``coordination.bind_addr`` included
4     the state file is in use by a running node
5     ``message send --wait``: the reply is ``failure`` or ``not_understood`` (it is printed)
6     ``serve`` with ``cluster_enabled``: the cluster could not start (the nats-server
      binary, its configuration, or NATS unreachable; the message says which)
====  =====================================================================
"""

from __future__ import annotations

import difflib
import importlib
import sys

import click

from caxton._version import __version__
from caxton.cli._common import config_option

__all__ = ["cli", "main"]

#: Subcommands load on first use, so `caxton serve` does not import the client commands'
#: dependencies (and the other way round): startup time matters for `/health`.
_COMMANDS: dict[str, str] = {
    "agent": "caxton.cli.agent:agent",
    "backup": "caxton.cli.backup:backup",
    "cluster": "caxton.cli.cluster:cluster",
    "config": "caxton.cli.config:config",
    "conversation": "caxton.cli.conversation:conversation",
    "dead-letters": "caxton.cli.deadletters:dead_letters",
    "debug": "caxton.cli.debug:debug",
    "message": "caxton.cli.message:message",
    "serve": "caxton.cli.serve:serve",
    "token": "caxton.cli.token:token",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported when they are used (or listed in --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, with "did you mean" for a mistyped command (`caxton agnet`)."""
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name and name not in known and not name.startswith("-") and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {close[0]!r}?" if len(close) == 1 else ""
            if len(close) > 1:
                hint = " (Did you mean one of: " + ", ".join(close) + "?)"
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@config_option
@click.version_option(__version__, prog_name="caxton")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Caxton: a runtime for WebAssembly agents that talk FIPA-ACL.

    With no command, `caxton [--config FILE]` runs a node (like `caxton serve`).
    """
    if ctx.invoked_subcommand is None:
        from caxton.cli.serve import serve_command

        serve_command(config_path, bind=None)


def main() -> None:
    """Entry point of the `caxton` console script (and of ``python -m caxton``)."""
    try:
        cli(prog_name="caxton")
    except SystemExit as exc:
        serve = sys.modules.get("caxton.cli.serve")
        if not exc.code and serve is not None:
            serve.exit_after_clean_stop()  # a node stopped cleanly: no interpreter teardown
        raise
