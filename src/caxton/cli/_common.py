"""Helpers shared by the CLI commands: loading config, failing with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from caxton.config import Config, load_config
from caxton.errors import ConfigError

__all__ = [
    "EXIT_CLUSTER",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_LISTEN",
    "EXIT_LOCKED",
    "EXIT_REPLY_FAILED",
    "config_option",
    "fail",
    "load_or_exit",
]

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LISTEN = 3
EXIT_LOCKED = 4
EXIT_REPLY_FAILED = 5
EXIT_CLUSTER = 6

F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    """The `--config FILE` option (env CAXTON_CONFIG_PATH is read by the loader)."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        metavar="FILE",
        default=None,
        help="Configuration file (default: $CAXTON_CONFIG_PATH, else the embedded default).",
    )(func)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print `message` to stderr and exit with `code`."""
    click.echo(f"caxton: {message}", err=True)
    raise SystemExit(code)


def load_or_exit(path: str | None, *, require_secret: bool = True) -> Config:
    """The effective configuration, or exit 2 with every problem listed.

    `require_secret` False: a command that never uses ``security.jwt_secret`` runs without it
    (see `load_config`); each command decides.
    """
    try:
        return load_config(path, require_secret=require_secret)
    except ConfigError as exc:
        fail(f"configuration error:\n{exc.message}", EXIT_CONFIG)
