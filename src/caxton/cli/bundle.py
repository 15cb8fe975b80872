"""`caxton debug bundle FILE`: one ``.tar.gz`` an operator attaches to a bug report.

Members, under one ``caxton-debug-<time>/`` directory: ``manifest.json`` (what was collected,
and what was not and why), ``config.toml`` (the effective configuration, secrets masked),
``logs/<log file>`` (its end, and the newest rotated files' while ``--log-bytes`` lasts),
``metrics.txt`` (the node's ``/metrics``), ``agents.json``, ``members.json`` (when
clustered), ``status.json`` (the admin listener's ``/status``) and ``versions.json``. The
local parts come from this host and ``--config``; the others from the running node. A node
that is down still gives a bundle: its parts are listed as failed, with the reason. The
command fails (exit 1) only when FILE cannot be written (and exits 2 for a ``--server`` that
is not a URL, as every client command does).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

from caxton._version import __version__
from caxton.cli import _bundle_parts as parts
from caxton.cli._client import ApiClient, ApiFailure, server_url
from caxton.cli._common import EXIT_CONFIG, EXIT_FAILED, config_option, fail
from caxton.cli._tls import current_ssl_context, has_client_cert, tls_options
from caxton.config import Config, load_config
from caxton.errors import ConfigError, SecurityError
from caxton.wire.timestamps import rfc3339

__all__ = ["bundle"]

#: Lifetime of the token the bundle signs for itself from ``security.jwt_secret``.
_OWN_TOKEN_SECONDS = 300.0


def _load(config_path: str | None) -> tuple[Config | None, parts.Part | None]:
    try:
        return load_config(config_path, require_secret=False), None
    except ConfigError as exc:
        return None, parts.failed("config", f"the configuration does not load: {exc.message}")


def _own_token(config: Config | None) -> str | None:
    """A short-lived token signed with the configuration's JWT secret (as `caxton token create`
    would), when the API asks for one and none was given."""
    if config is None or not config.security.auth_enabled or config.security.jwt_secret is None:
        return None
    from caxton.security import TokenIssuer

    try:
        issuer = TokenIssuer(config.security.jwt_secret.reveal(), default_expiry=_OWN_TOKEN_SECONDS)
    except SecurityError:
        return None
    return issuer.create("caxton-debug-bundle", expires_in=_OWN_TOKEN_SECONDS)


def _target(directory: Path) -> None:
    """Fail at once, before collecting anything, when FILE's directory cannot take it."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        fail(f"cannot write the bundle: the directory {directory} {what}", EXIT_FAILED)
    if not os.access(directory, os.W_OK | os.X_OK):
        fail(f"cannot write the bundle: the directory {directory} is not writable", EXIT_FAILED)


def _write(file: Path, top: str, members: list[tuple[str, bytes]]) -> int:
    """Write the tarball next to `file` and rename it into place; returns its size."""
    stamp = time.time()
    fd, temporary = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(data), int(stamp), 0o600
                tar.addfile(info, io.BytesIO(data))
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return file.stat().st_size


#: The parts read from the running node (the others are read on this host).
_FROM_NODE = ("metrics", "agents", "members", "status")


def _node_note(collected: list[parts.Part]) -> str:
    """One line on the node itself: answered, or not (then the bundle holds the local parts)."""
    asked = [part for part in collected if part.name in _FROM_NODE and part.status != "skipped"]
    if any(part.status == "collected" for part in asked):
        return "answered"
    local = ", ".join(p.name for p in collected if p.status == "collected") or "nothing"
    why = asked[0].detail if asked else "nothing was asked of it"
    return f"not reachable ({why}); this bundle holds the local parts only ({local})"


def _guarded(name: str, collect: Callable[[], parts.Part]) -> parts.Part:
    try:
        return collect()
    except Exception as exc:  # one part lost, never the bundle
        return parts.failed(name, f"{type(exc).__name__}: {exc}")


def _collect(
    config: Config | None,
    config_failure: parts.Part | None,
    client: ApiClient,
    metrics_url: str | None,
    log_bytes: int,
) -> list[parts.Part]:
    """Every part, in the manifest's order: the local ones, then the node's, then versions."""
    collected: list[parts.Part]
    if config is None:
        assert config_failure is not None
        why = "the configuration (which names the log file) does not load"
        collected = [config_failure, parts.failed("logs", why)]
    else:
        collected = [parts.config_part(config)]
        try:
            collected += parts.logs(config, log_bytes)
        except Exception as exc:  # the log files changed under us: no logs, still a bundle
            collected.append(parts.failed("logs", f"{type(exc).__name__}: {exc}"))
    effective = config or Config.embedded_default()
    net = effective.networking
    if metrics_url is None and not effective.observability.enable_metrics:
        collected.append(parts.Part("metrics", None, "skipped", "enable_metrics is false"))
    else:
        url = metrics_url or parts.local_url(net.metrics_address) + "/metrics"
        collected.append(
            _guarded("metrics", lambda: parts.http_text("metrics", "metrics.txt", url))
        )
    collected.append(_guarded("agents", lambda: parts.agents(client)))
    collected.append(_guarded("members", lambda: parts.members(client, config)))
    status_url = parts.local_url(net.admin_address) + "/status"
    collected.append(
        _guarded("status", lambda: parts.http_text("status", "status.json", status_url))
    )
    collected.append(_guarded("versions", lambda: parts.versions(config)))
    return collected


@click.command("bundle")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@click.option(
    "--server",
    envvar="CAXTON_SERVER",
    default=None,
    help="API address (env CAXTON_SERVER; default: the configuration's bind_address).",
)
@click.option(
    "--token",
    envvar="CAXTON_TOKEN",
    default=None,
    help="API token (env CAXTON_TOKEN; default: one signed with the configuration's "
    "jwt_secret when auth is on).",
)
@click.option(
    "--metrics-url",
    default=None,
    metavar="URL",
    help="The node's metrics page (default: /metrics on the configuration's metrics_address).",
)
@click.option(
    "--log-bytes",
    type=click.IntRange(0, 256 * 1024 * 1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="The most bytes of log to include (the log file's end, then the newest rotated files').",
)
@tls_options
def bundle(
    file: Path,
    config_path: str | None,
    server: str | None,
    token: str | None,
    metrics_url: str | None,
    log_bytes: int,
) -> None:
    """Write FILE (.tar.gz): configuration (secrets masked), log, metrics, agents, members,
    status and versions, for a bug report; a node that is down still gives one."""
    file = file.expanduser().absolute()
    _target(file.parent)
    config, config_failure = _load(config_path)
    net = (config or Config.embedded_default()).networking
    scheme = "https" if net.tls_enabled else "http"
    try:
        api = server_url(server) if server else parts.local_url(net.bind_address, scheme)
    except ApiFailure as exc:  # not a URL: bad usage, as for every client command
        fail(exc.message, EXIT_CONFIG)
    token = token or _own_token(config)
    client = ApiClient(api, token, ssl_context=current_ssl_context(), client_cert=has_client_cert())
    collected = _collect(config, config_failure, client, metrics_url, log_bytes)
    masker = parts.secret_masker(config, token)
    manifest = {
        "created": rfc3339(time.time()),
        "caxton": __version__,
        "server": api,
        "config": None if config is None else str(config.source or "the embedded default"),
        "node": _node_note(collected),
        "parts": [part.manifest() for part in collected],
    }
    members = [("manifest.json", json.dumps(manifest, indent=2) + "\n")]
    for part in collected:
        if part.file is not None and part.data is not None:
            members.append((part.file, part.data.decode("utf-8", errors="replace")))
    masked = [(name, masker.mask(text).encode()) for name, text in members]
    top = "caxton-debug-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        size = _write(file, top, masked)
    except OSError as exc:
        fail(f"cannot write the bundle {file}: {exc.strerror or exc}", EXIT_FAILED)
    click.echo(f"wrote {file} ({size} bytes)")
    if manifest["node"] != "answered":
        click.echo(f"  the node is {manifest['node']}")
    for part in collected:
        mark = {"collected": "ok", "failed": "FAILED", "skipped": "skipped"}[part.status]
        click.echo(f"  {part.name:<9} {mark:<8} {part.detail}")
