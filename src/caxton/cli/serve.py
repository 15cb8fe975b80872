"""`caxton serve`: run a node in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import dataclasses

import click

from caxton.cli._common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LISTEN,
    EXIT_LOCKED,
    config_option,
    fail,
    load_or_exit,
)
from caxton.config import Config, parse_address
from caxton.errors import ConfigError, Error, StateLockedError
from caxton.observability import configure_logging
from caxton.server import ListenError, run_server

__all__ = ["serve", "serve_command"]


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def serve_command(
    config_path: str | None, *, bind: str | None, examples: bool | None = None
) -> None:
    """Load the config, set up logging and run a node; exit with a trustworthy code.

    `examples` None means: deploy the example agents on the embedded default only.
    """
    config = load_or_exit(config_path)
    if examples is None:
        examples = config.source is None
    if bind is not None:
        try:
            address = parse_address(bind)
        except ValueError as exc:
            fail(f"--bind: {exc}", EXIT_CONFIG)
        config = config.replace(
            networking=dataclasses.replace(config.networking, bind_address=address)
        )
    _run(config, examples)


def _run(config: Config, examples: bool) -> None:
    logging_setup = configure_logging(config.observability)
    logging_setup.register_secret(config.security.jwt_secret)
    try:
        with _event_loop_runner() as runner:
            runner.run(run_server(config, deploy_examples=examples))
    except ConfigError as exc:
        fail(f"configuration error:\n{exc.message}", EXIT_CONFIG)
    except ListenError as exc:
        fail(exc.message, EXIT_LISTEN)
    except StateLockedError as exc:
        fail(exc.message, EXIT_LOCKED)
    except Error as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        pass
    finally:
        logging_setup.close()


@click.command()
@config_option
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=None,
    help="Override networking.bind_address (the API address).",
)
@click.option(
    "--examples/--no-examples",
    default=None,
    help="Deploy the example agents (default: only on the embedded default).",
)
def serve(config_path: str | None, bind: str | None, examples: bool | None) -> None:
    """Run a node in the foreground (SIGTERM or Ctrl-C drains and stops it)."""
    serve_command(config_path, bind=bind, examples=examples)
