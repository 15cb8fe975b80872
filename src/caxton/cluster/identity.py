"""The node's name: stable across restarts, unique in the cluster.

`[coordination] node_name` wins when set. Otherwise the first start makes one from the host
name and a short random id and keeps it in ``<data dir>/node-id``; later starts read it back, so
a node keeps its name even when its host name changes (a container recreated on the same
volume). Several nodes on one machine have different data directories, hence different names.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from pathlib import Path

from caxton.config.schema import NODE_NAME
from caxton.errors import ConfigError

__all__ = ["NODE_ID_FILE", "node_name"]

#: The file in the data directory that keeps a generated name.
NODE_ID_FILE = "node-id"
_HOST_KEEP = re.compile(r"[^A-Za-z0-9-]+")


def _host_part() -> str:
    """The host name up to its first dot, with anything a node name cannot hold replaced."""
    host = _HOST_KEEP.sub("-", socket.gethostname().split(".")[0]).strip("-")
    return host[:48] or "node"


def _generated() -> str:
    return f"{_host_part()}-{secrets.token_hex(4)}"


def node_name(configured: str | None, data_dir: Path) -> str:
    """This node's name: `configured`, else the one kept in `data_dir`, made on first use.

    Raises:
        ConfigError: the kept file is not a valid name (says which file to fix or delete), or
            the data directory cannot be written.
    """
    if configured is not None:
        return configured
    path = data_dir / NODE_ID_FILE
    try:
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            _create(path, _generated())
        return _read(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the node name in {path}: {exc.strerror or exc}; make the data "
            f"directory writable or set [coordination] node_name",
            details={"file": str(path)},
        ) from exc


def _create(path: Path, name: str) -> None:
    """Write `name` to `path` whole or not at all, failing if the file exists."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(name + "\n", encoding="utf-8")
    try:
        os.link(temporary, path)  # atomic, and fails with FileExistsError if it exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _read(path: Path) -> str:
    name = path.read_text(encoding="utf-8").strip()
    if not NODE_NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: not a valid node name ({name[:80]!r}); fix it or delete the file to get a "
            f"new name (the cluster then sees a new node)",
            details={"file": str(path)},
        )
    return name
