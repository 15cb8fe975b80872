"""The `caxton` command line: one entry point for the server, local tools and API clients.

Exit codes a script can trust:

====  =====================================================================
0     success
1     the operation failed (the message says why)
2     bad usage or a configuration error (names the file and the key)
3     a listener could not bind (port in use, not permitted)
4     the state file is in use by a running node
====  =====================================================================
"""

from __future__ import annotations

import click

from caxton._version import __version__
from caxton.cli._common import config_option
from caxton.cli.agent import agent
from caxton.cli.backup import backup
from caxton.cli.config import config
from caxton.cli.conversation import conversation
from caxton.cli.deadletters import dead_letters
from caxton.cli.debug import debug
from caxton.cli.message import message
from caxton.cli.serve import serve, serve_command
from caxton.cli.token import token

__all__ = ["cli", "main"]


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(__version__, prog_name="caxton")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Caxton: a runtime for WebAssembly agents that talk FIPA-ACL.

    With no command, `caxton [--config FILE]` runs a node (like `caxton serve`).
    """
    if ctx.invoked_subcommand is None:
        serve_command(config_path, bind=None)


cli.add_command(serve)
cli.add_command(config)
cli.add_command(backup)
cli.add_command(agent)
cli.add_command(token)
cli.add_command(message)
cli.add_command(conversation)
cli.add_command(dead_letters)
cli.add_command(debug)


def main() -> None:
    """Entry point of the `caxton` console script."""
    cli(prog_name="caxton")
