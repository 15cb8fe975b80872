"""`caxton config check|show`: validate a file, print the effective configuration."""

from __future__ import annotations

import json

import click

from caxton.cli._common import EXIT_CONFIG, config_option, fail, load_or_exit
from caxton.config import Config, config_to_dict, dump_config, load_config
from caxton.config.otlp import LegacyJaeger, otlp_target
from caxton.errors import ConfigError

__all__ = ["config"]


@click.group()
def config() -> None:
    """Validate and inspect configuration files."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@config_option
def check(file: str | None, config_path: str | None) -> None:
    """Validate FILE (or --config, or $CAXTON_CONFIG_PATH); exit 2 on any error."""
    path = file or config_path
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(f"configuration error:\n{exc.message}", EXIT_CONFIG)
    source = cfg.source if cfg.source is not None else "the embedded default"
    click.echo(f"{source}: OK")
    for warning in _warnings(cfg):
        click.echo(f"{source}: warning: {warning}", err=True)


def _warnings(cfg: Config) -> list[str]:
    """What is valid but will not work as the file seems to mean (the node warns at start too)."""
    observability = cfg.observability
    if not (observability.enable_tracing and observability.otlp_endpoint):
        return []
    target = otlp_target(observability.otlp_endpoint, observability.otlp_protocol)
    return [target.warning()] if isinstance(target, LegacyJaeger) else []


@config.command("show")
@config_option
@click.option(
    "--output",
    "-o",
    type=click.Choice(["toml", "json"]),
    default="toml",
    show_default=True,
    help="Output format.",
)
def show(config_path: str | None, output: str) -> None:
    """Print the effective configuration (defaults filled in, secrets masked)."""
    cfg = load_or_exit(config_path, require_secret=False)  # shown masked, never used
    if output == "json":
        click.echo(json.dumps(config_to_dict(cfg, mask_secrets=True), indent=2))
    else:
        click.echo(dump_config(cfg, mask_secrets=True), nl=False)  # its header names the source
