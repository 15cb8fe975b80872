"""`caxton backup create|restore`: online SQLite backups of the node's state."""

from __future__ import annotations

from pathlib import Path

import click

from caxton.cli._common import EXIT_LOCKED, config_option, fail, load_or_exit
from caxton.errors import StateLockedError, StorageError
from caxton.storage import backup_database, restore_database

__all__ = ["backup"]


@click.group()
def backup() -> None:
    """Back up and restore the node's state file (coordination.local_state_path)."""


@backup.command("create")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gzip", "use_gzip", is_flag=True, help="Compress the copy (adds .gz).")
@config_option
def create(dest: Path, use_gzip: bool, config_path: str | None) -> None:
    """Copy the state to DEST while the node keeps running (SQLite online backup)."""
    cfg = load_or_exit(config_path, require_secret=False)  # a backup job needs no secret
    source = cfg.coordination.local_state_path
    if not source.exists():
        fail(f"no state file at {source} (coordination.local_state_path)")
    try:
        result = backup_database(source, dest, gzip=use_gzip)
    except StorageError as exc:
        fail(exc.message)
    click.echo(f"backup written: {result.path} ({result.bytes} bytes, {result.duration:.2f}s)")


@backup.command("restore")
@click.argument("src", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@config_option
def restore(src: Path, config_path: str | None) -> None:
    """Replace the state file with SRC (.db or .db.gz). Refuses while a node runs on it."""
    cfg = load_or_exit(config_path, require_secret=False)
    target = cfg.coordination.local_state_path
    try:
        result = restore_database(src, target)
    except StateLockedError as exc:
        fail(exc.message, EXIT_LOCKED)
    except StorageError as exc:
        fail(exc.message)
    click.echo(f"restored {src} -> {target}")
    if result.previous is not None:
        click.echo(f"the previous state was kept as {result.previous}")
