"""`caxton token create`: issue an API token signed with the configured JWT secret."""

from __future__ import annotations

import click

from caxton.cli._common import EXIT_CONFIG, config_option, fail, load_or_exit
from caxton.config import parse_duration
from caxton.errors import SecurityError
from caxton.security import TokenIssuer

__all__ = ["token"]


@click.group()
def token() -> None:
    """API tokens (JWT, signed with security.jwt_secret)."""


@token.command("create")
@config_option
@click.option("--subject", "-s", default="caxton-cli", show_default=True, help="Who holds it.")
@click.option(
    "--expiry", "-e", default=None, help="Lifetime such as 1h or 30d (default: jwt_expiry)."
)
def create(config_path: str | None, subject: str, expiry: str | None) -> None:
    """Print a new token; use it as CAXTON_TOKEN or `--token`."""
    cfg = load_or_exit(config_path)
    secret = cfg.security.jwt_secret
    if secret is None:
        fail(
            "security.jwt_secret is not set in the configuration (set it, e.g. "
            'jwt_secret = "${JWT_SECRET}", and export JWT_SECRET)',
            EXIT_CONFIG,
        )
    try:
        lifetime = parse_duration(expiry) if expiry is not None else None
    except ValueError as exc:
        fail(f"--expiry: {exc}", EXIT_CONFIG)
    try:
        issuer = TokenIssuer(secret.reveal(), default_expiry=cfg.security.jwt_expiry)
    except SecurityError as exc:
        fail(exc.message, EXIT_CONFIG)
    click.echo(issuer.create(subject, expires_in=lifetime))
