"""What `caxton debug bundle` collects, one `Part` each; a part that cannot be had says why.

Every collector returns a `Part` and never raises: a node that is down, a log file that is
missing or a configuration that does not load costs that one part, not the bundle. Secrets are
kept out twice: the configuration is rendered masked (as `caxton config show` renders it), and
every text part goes through the log masker with the configuration's secret values and the API
token registered (`secret_masker`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from caxton._version import __version__
from caxton.cli._client import ApiClient, ApiFailure
from caxton.config import Config, dump_config
from caxton.config.schema import Address
from caxton.errors import Error
from caxton.observability._masking import SecretMasker

__all__ = [
    "Part",
    "agents",
    "config_part",
    "failed",
    "http_text",
    "local_url",
    "logs",
    "members",
    "secret_masker",
    "versions",
]

#: The most of one HTTP answer kept (a metrics page of a busy node is a few hundred KB).
MAX_ANSWER = 16 * 1024 * 1024
#: The most rotated log files read after the active one.
ROTATED_FILES = 2
#: Seconds one call to the node (or to nats-server --version) may take.
TIMEOUT = 10.0

Status = Literal["collected", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Part:
    """One member of the bundle, or why it is not there."""

    name: str
    file: str | None
    status: Status
    detail: str = ""
    data: bytes | None = None

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "status": self.status, "detail": self.detail}


def failed(name: str, why: str) -> Part:
    return Part(name, None, "failed", why)


def secret_masker(config: Config | None, token: str | None) -> SecretMasker:
    """The log masker, knowing every secret of `config` and the API token."""
    masker = SecretMasker()
    masker.register_secret(token)
    if config is not None:
        masker.register_secret(config.security.jwt_secret)
        masker.register_secret(config.coordination.cluster_secret)
        url = config.coordination.nats_url
        if url and (match := re.search(r"//[^:/@]*:([^/@]*)@", url)):
            masker.register_secret(match.group(1))
    return masker


def local_url(address: Address, scheme: str = "http") -> str:
    """A URL that reaches a listener bound to `address` from this host (a wildcard address is
    reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
    return f"{scheme}://{Address(host, address.port)}"


def config_part(config: Config) -> Part:
    text = dump_config(config, mask_secrets=True)
    source = config.source if config.source is not None else "the embedded default"
    return Part(
        "config", "config.toml", "collected", f"from {source}, secrets masked", text.encode()
    )


def _tail(path: Path, limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of `path` from a line start, and the file's size."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        start = max(0, size - limit)
        file.seek(start)
        data = file.read(limit)
    if start > 0:
        data = data.partition(b"\n")[2]  # a whole first line
    return data, size


def logs(config: Config, limit: int) -> list[Part]:
    """The end of the node's log file, then of the newest rotated ones while `limit` bytes (in
    all, whole lines) are not used up: just after a rotation the active file is nearly empty."""
    path = config.observability.log_file
    if path is None:
        why = (
            "none found: the configuration writes no log file (observability.log_file is not "
            "set, so the node logs to stderr: see journalctl -u caxton or docker logs)"
        )
        return [Part("logs", None, "skipped", why)]
    try:
        data, size = _tail(path, limit)
    except OSError as exc:
        return [failed("logs", f"cannot read the log file {path}: {exc.strerror or exc}")]
    detail = f"{path}: the last {len(data)} of {size} bytes"
    found: list[Part] = []
    left, others = (0 if size > limit else limit - size), []
    rotated = sorted(
        path.parent.glob(f"{path.name}.*"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for older in rotated:
        if left <= 0 or len(found) == ROTATED_FILES:
            others.append(older.name)
            continue
        try:
            tail, total = _tail(older, left)
        except OSError as exc:
            found.append(failed("rotated log", f"cannot read {older}: {exc.strerror or exc}"))
            continue
        why = f"{older}: the last {len(tail)} of {total} bytes"
        found.append(Part("rotated log", f"logs/{older.name}", "collected", why, tail))
        left = 0 if total > left else left - total  # cut short: the budget is used up
    if others:
        detail += f"; older rotated files not included: {', '.join(others)}"
    return [Part("logs", f"logs/{path.name}", "collected", detail, data), *found]


def http_text(name: str, file: str, url: str) -> Part:
    """A plain GET (the metrics listener speaks no JSON and needs no token)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            data = resp.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        return failed(name, f"GET {url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return failed(name, f"GET {url}: the node did not answer ({reason})")
    return Part(name, file, "collected", f"GET {url}", data)


def _json_call(client: ApiClient, name: str, file: str, path: str, **query: str) -> Part:
    try:
        _, body = client.request("GET", path, query=query or None, timeout=TIMEOUT)
    except ApiFailure as exc:
        return failed(name, f"GET {path}: {exc.message}")
    text = json.dumps(body, indent=2, sort_keys=True) + "\n"
    return Part(name, file, "collected", f"GET {client.server}{path}", text.encode())


def agents(client: ApiClient) -> Part:
    return _json_call(client, "agents", "agents.json", "/api/v1/agents", limit="1000")


def members(client: ApiClient, config: Config | None) -> Part:
    if config is not None and not config.coordination.cluster_enabled:
        return Part("members", None, "skipped", "not clustered (cluster_enabled is false)")
    return _json_call(client, "members", "members.json", "/api/v1/cluster/members")


def _nats_server(config: Config | None) -> str:
    if config is not None and config.coordination.nats_url is not None:
        return "not run by this node (coordination.nats_url)"
    from caxton.cluster.binary import find_binary  # the only use of the cluster package here

    try:
        binary = find_binary(None if config is None else config.coordination.nats_server)
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not available ({exc})"
    except Error as exc:  # no binary anywhere (ClusterError)
        return f"not found ({exc.message})"
    return (done.stdout or done.stderr).strip() or f"exited {done.returncode}"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(config: Config | None) -> Part:
    found = {
        "caxton": __version__,
        "python": sys.version.replace("\n", " "),
        "wasmtime": _package("wasmtime"),
        "sqlite": sqlite3.sqlite_version,
        "nats-server": _nats_server(config),
        "os": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
    }
    text = json.dumps(found, indent=2) + "\n"
    return Part("versions", "versions.json", "collected", "of this host's caxton", text.encode())
