"""The deployment guide's systemd units, checked by `systemd-analyze verify` and then run by hand.

The units and the backup scripts below are the guide's text verbatim. The only adaptation is
where things live: ``/opt/caxton`` becomes a temporary directory and ``/usr/local/bin/caxton``
the installed console script (see `_adapt`). systemd is not needed (nor running): each unit's
commands are run here the way systemd would run them.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from caxton.server import SHUTDOWN_MARGIN
from tests.nodeproc import NodeProcess, write_config
from tests.support import EXAMPLES, message, tool, wait_until

pytestmark = pytest.mark.slow

#: /etc/systemd/system/caxton.service from the guide ("Create systemd service"), verbatim.
GUIDE_CAXTON_SERVICE = """\
[Unit]
Description=Caxton Multi-Agent Runtime
After=network.target

[Service]
Type=exec
User=caxton
Group=caxton
ExecStart=/usr/local/bin/caxton --config /opt/caxton/config/production.toml
Restart=always
RestartSec=5
StandardOutput=journal
StandardError=journal
SyslogIdentifier=caxton

# Security settings
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=/opt/caxton/data /opt/caxton/logs

[Install]
WantedBy=multi-user.target
"""

#: /etc/systemd/system/caxton-backup.service from the guide, verbatim.
GUIDE_BACKUP_SERVICE = """\
[Unit]
Description=Caxton Backup Service
After=caxton.service

[Service]
Type=oneshot
User=caxton
ExecStart=/opt/caxton/scripts/backup-state.sh
ExecStartPost=/opt/caxton/scripts/backup-config.sh
"""

#: /etc/systemd/system/caxton-backup.timer from the guide, verbatim.
GUIDE_BACKUP_TIMER = """\
[Unit]
Description=Run Caxton backup daily
Requires=caxton-backup.service

[Timer]
OnCalendar=daily
Persistent=true

[Install]
WantedBy=timers.target
"""

#: /opt/caxton/scripts/backup-state.sh from the guide, verbatim.
GUIDE_BACKUP_STATE_SH = """\
#!/bin/bash
# /opt/caxton/scripts/backup-state.sh

BACKUP_DIR="/opt/caxton/backups"
DATE=$(date +%Y%m%d_%H%M%S)
STATE_PATH="/opt/caxton/data/local.db"

mkdir -p "$BACKUP_DIR"

# Create SQLite backup
sqlite3 "$STATE_PATH" ".backup '$BACKUP_DIR/state_$DATE.db'"

# Compress backup
gzip "$BACKUP_DIR/state_$DATE.db"

# Clean old backups (keep last 7 days)
find "$BACKUP_DIR" -name "state_*.db.gz" -mtime +7 -delete

echo "State backup completed: $BACKUP_DIR/state_$DATE.db.gz"
"""

#: /opt/caxton/scripts/backup-config.sh from the guide, verbatim.
GUIDE_BACKUP_CONFIG_SH = """\
#!/bin/bash
# /opt/caxton/scripts/backup-config.sh

BACKUP_DIR="/opt/caxton/backups"
DATE=$(date +%Y%m%d_%H%M%S)
CONFIG_DIR="/opt/caxton/config"

mkdir -p "$BACKUP_DIR"

# Backup configuration files
tar -czf "$BACKUP_DIR/config_$DATE.tar.gz" -C "$(dirname "$CONFIG_DIR")" "$(basename "$CONFIG_DIR")"

# Clean old backups
find "$BACKUP_DIR" -name "config_*.tar.gz" -mtime +30 -delete

echo "Configuration backup completed: $BACKUP_DIR/config_$DATE.tar.gz"
"""

#: Our `agent_shutdown_timeout`: the SIGTERM drain budget the stop is measured against.
SHUTDOWN_TIMEOUT = 3.0
#: systemd's DefaultTimeoutStopSec (the unit sets no TimeoutStopSec=): after it, SIGKILL.
SYSTEMD_STOP_TIMEOUT = 90.0


def _systemd_analyze() -> str:
    return tool("systemd-analyze", "systemd")


def _caxton_executable() -> str:
    """The console script installed with the interpreter running the tests (so another
    checkout's `caxton` earlier on PATH is not the one tested), else the one on PATH."""
    beside = Path(sys.executable).parent / "caxton"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    path = shutil.which("caxton")
    if path is None:
        pytest.fail("the `caxton` console script is not on PATH: install the project (pip)")
    return path


def _adapt(text: str, root: Path) -> str:
    """The guide's text with its install locations moved under ``root``.

    ``/usr/local/bin/caxton`` (the guide's release binary) becomes the installed console
    script, and ``/opt/caxton`` becomes ``root``; nothing else changes. (A real install must
    keep that executable out of /home and /root: the unit's ``ProtectHome=yes`` hides them.)
    """
    text = text.replace("/usr/local/bin/caxton", _caxton_executable())
    return text.replace("/opt/caxton", str(root))


def _install(root: Path) -> Path:
    """A fake /opt/caxton under ``root``: config, data and logs dirs, the three units.

    The config is a real node config (loopback ports from `write_config`, state in
    ``root/data``, log file in ``root/logs``) at the guide's path, config/production.toml.
    Returns the directory holding the units.
    """
    cfg = write_config(
        root, extra=f'\n[runtime]\nagent_shutdown_timeout = "{SHUTDOWN_TIMEOUT:g}s"\n'
    )
    (root / "config").mkdir()
    cfg.rename(root / "config" / "production.toml")
    for directory in ("data", "logs", "scripts"):
        (root / directory).mkdir(exist_ok=True)
    for name, text in (
        ("backup-state.sh", GUIDE_BACKUP_STATE_SH),
        ("backup-config.sh", GUIDE_BACKUP_CONFIG_SH),
    ):
        script = root / "scripts" / name
        script.write_text(_adapt(text, root))
        script.chmod(0o755)
    units = root / "systemd"
    units.mkdir()
    for name, text in (
        ("caxton.service", GUIDE_CAXTON_SERVICE),
        ("caxton-backup.service", GUIDE_BACKUP_SERVICE),
        ("caxton-backup.timer", GUIDE_BACKUP_TIMER),
    ):
        (units / name).write_text(_adapt(text, root))
    return units


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on unit files (siblings in their directory are found too).

    ``--man=no``: the units have no Documentation= and there are no man pages to check. No
    systemd needs to run. ``User=caxton`` needs no such user: verify does not resolve users
    (the service manager does, when it starts the unit), so the guide's line stays.
    """
    return subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units[0].parent,
    )


def _problems(result: subprocess.CompletedProcess[str], *units: Path) -> list[str]:
    """Lines of `systemd-analyze verify` output about our units."""
    output = (result.stdout + result.stderr).splitlines()
    return [line for line in output if any(unit.name in line for unit in units)]


def _directive(unit: Path, key: str) -> list[str]:
    """The command line of the unit's ``key=`` (one line, no systemd specifiers), as argv."""
    values = [
        line.split("=", 1)[1]
        for line in unit.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]
    assert len(values) == 1, (key, values)
    assert "%" not in values[0], "specifiers would need systemd to expand them"
    return shlex.split(values[0])


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_mtime_ns, path.stat().st_size)
        for path in root.rglob("*")
        if path.is_file()
    }


def _http(url: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype} if ctype else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _deploy_echo(node: NodeProcess, name: str) -> None:
    wasm = (EXAMPLES / "echo.wasm").read_bytes()
    status, body = _http(node.url("api", f"/api/v1/agents?name={name}"), wasm, "application/wasm")
    assert status == 201, body


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _install(tmp_path)
    service = units / "caxton.service"
    assert _directive(service, "ExecStart") == [
        _caxton_executable(),
        "--config",
        str(tmp_path / "config" / "production.toml"),
    ]
    result = _verify(service)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problems(result, service) == [], result.stdout + result.stderr

    backup, timer = units / "caxton-backup.service", units / "caxton-backup.timer"
    result = _verify(backup, timer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problems(result, backup, timer) == [], result.stdout + result.stderr

    # The check has teeth: the same units with one script not executable, or a mistyped
    # directive, are reported.
    (tmp_path / "scripts" / "backup-config.sh").chmod(0o644)
    result = _verify(backup)
    assert result.returncode != 0
    assert "backup-config.sh" in result.stdout + result.stderr
    service.write_text(service.read_text().replace("Type=exec", "Type=exek"))
    assert any("Type" in line or "type" in line for line in _problems(_verify(service), service))


def test_exec_start_runs_a_node_that_systemd_can_stop(tmp_path: Path) -> None:
    """caxton.service's ExecStart, run as systemd would, writes only where the unit allows.

    tests/cli/test_serve_process.py covers `caxton --config` stopping on SIGTERM; this is what
    the unit adds: the installed console script with exactly the unit's arguments, SIGTERM to
    the whole process group (KillMode=control-group), a stop well inside systemd's stop timeout,
    and no writes outside ReadWritePaths= (ProtectSystem=strict, ProtectHome=yes would make them
    fail under systemd).
    """
    root = tmp_path / "opt"
    root.mkdir()
    units = _install(root)
    argv = _directive(units / "caxton.service", "ExecStart")
    cfg = root / "config" / "production.toml"
    config = tomllib.loads(cfg.read_text())
    assert config["runtime"]["agent_shutdown_timeout"] == f"{SHUTDOWN_TIMEOUT:g}s"
    assert SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN < SYSTEMD_STOP_TIMEOUT
    allowed = [root / "data", root / "logs"]  # ReadWritePaths=
    unit_text = (units / "caxton.service").read_text()
    assert f"ReadWritePaths={' '.join(map(str, allowed))}" in unit_text

    # systemd starts system services in "/" with a minimal environment; stand-ins that must
    # stay empty for the working directory, HOME and TMPDIR.
    cwd, home, tmp = tmp_path / "cwd", tmp_path / "home", tmp_path / "tmp"
    for directory in (cwd, home, tmp):
        directory.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        # pyenv and friends may need their own variables to find the interpreter.
        **{k: v for k, v in os.environ.items() if k.startswith(("PYENV", "VIRTUAL_ENV"))},
    }
    before = _files(root)

    node = NodeProcess(cfg)  # only for its URLs: the process is the unit's command line
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")
            return node.get("api", "/ready")[0] == 200

        wait_until(ready, 20, retry_on=(OSError,), what="the unit's ExecStart became ready")
        _deploy_echo(node, "echo")  # agents, the module cache, messages: real writes
        status, body = _http(
            node.url("api", "/api/v1/messages?wait=5s"), message("echo", "hi"), "application/json"
        )
        assert status == 200, body

        stopping = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # `systemctl stop`: SIGTERM to the unit's cgroup
        _, stderr = proc.communicate(timeout=SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN + 5)
        took = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")
    assert took < SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN, took
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the unit's process group is left behind

    changed = [
        path
        for path, stamp in _files(root).items()
        if before.get(path) != stamp and not any(path.is_relative_to(d) for d in allowed)
    ]
    assert changed == [], "written outside ReadWritePaths="
    for directory in (cwd, home, tmp):
        assert list(directory.iterdir()) == [], f"the node wrote into {directory}"
    assert (root / "data" / "local.db").exists()
    log = (root / "logs" / "caxton.log").read_text()
    assert "caxton stopped" in log


def test_backup_service_commands_on_a_running_node(tmp_path: Path) -> None:
    """caxton-backup.service's ExecStart and ExecStartPost, in order, then the guide's restore.

    tests/cli/test_backup_cli.py covers the state script's `sqlite3 .backup` under write load;
    here: the two scripts as the unit runs them, their file names, retention and messages, and
    that what they produce restores by the guide's "Disaster Recovery" steps.
    """
    root = tmp_path / "opt"
    root.mkdir()
    units = _install(root)
    backup_unit = units / "caxton-backup.service"
    commands = [_directive(backup_unit, "ExecStart"), _directive(backup_unit, "ExecStartPost")]
    assert commands == [
        [str(root / "scripts" / "backup-state.sh")],
        [str(root / "scripts" / "backup-config.sh")],
    ]
    # What the backup scripts run.
    for name, package in [("sqlite3",) * 2, ("gzip",) * 2, ("tar",) * 2, ("find", "findutils")]:
        tool(name, package)

    backups = root / "backups"
    backups.mkdir()
    # Earlier backups, days old: one past each script's retention, one within it.
    ages = {"state": (10, 5), "config": (40, 20)}
    aged: dict[str, tuple[Path, Path]] = {}
    for kind, (old, recent) in ages.items():
        suffix = "db.gz" if kind == "state" else "tar.gz"
        pair = (
            backups / f"{kind}_19990101_000000.{suffix}",
            backups / f"{kind}_19990102_000000.{suffix}",
        )
        for path, days in zip(pair, (old, recent), strict=True):
            path.write_bytes(b"old")
            stamp = time.time() - days * 86400
            os.utime(path, (stamp, stamp))
        aged[kind] = pair

    cfg = root / "config" / "production.toml"
    db = root / "data" / "local.db"
    with NodeProcess(cfg).start() as node:
        _deploy_echo(node, "echo")
        outputs = []
        for argv in commands:  # Type=oneshot: ExecStartPost= runs after ExecStart= succeeded
            ran = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
            assert ran.returncode == 0, (argv, ran.stdout, ran.stderr)
            assert ran.stderr == "", ran.stderr
            outputs.append(ran.stdout.strip())
        _deploy_echo(node, "later")  # after the backup: must not survive the restore
        # closing(): a connection left open would keep the WAL file after the node stops.
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as live:
            tables = {
                r[0] for r in live.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            node_id = live.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]
        code, stderr = node.stop()
        assert code == 0, stderr

    state_msg, config_msg = outputs
    assert state_msg.startswith(f"State backup completed: {backups}/state_"), state_msg
    assert config_msg.startswith(f"Configuration backup completed: {backups}/config_"), config_msg
    state_gz = Path(state_msg.split(": ", 1)[1])
    config_tgz = Path(config_msg.split(": ", 1)[1])
    assert state_gz.exists()
    assert config_tgz.exists()
    assert not state_gz.with_suffix("").exists(), "gzip should have replaced the plain copy"
    # Retention: state backups older than 7 days and config backups older than 30 go.
    for kind, (expired, kept) in aged.items():
        assert not expired.exists(), f"old {kind} backup kept"
        assert kept.exists(), f"recent {kind} backup removed"

    copy = tmp_path / "state-copy.db"
    with gzip.open(state_gz) as src, copy.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0] == node_id
    assert copied == tables
    assert {"meta", "agents"} <= copied

    with tarfile.open(config_tgz) as tar:
        assert tar.getnames() == ["config", "config/production.toml"]
        member = tar.extractfile("config/production.toml")
        assert member is not None
        assert member.read() == cfg.read_bytes()

    # The guide's recovery: config from the tarball, state with `gunzip -c ... > local.db`,
    # then start the node (the unit's `systemctl start`). It relies on the clean stop having
    # checkpointed and removed the WAL: a leftover local.db-wal (after a crash or SIGKILL) would
    # be replayed over the restored file by SQLite.
    assert sorted(p.name for p in db.parent.glob("local.db*")) == ["local.db", "local.db.lock"]
    shutil.rmtree(root / "config")
    subprocess.run(["tar", "-xzf", str(config_tgz), "-C", str(root)], check=True, timeout=60)
    assert cfg.exists()
    with db.open("wb") as out:
        subprocess.run(["gunzip", "-c", str(state_gz)], stdout=out, check=True, timeout=60)
    with NodeProcess(cfg).start() as node:
        assert node.get("api", "/api/v1/agents/echo")[0] == 200
        assert node.get("api", "/api/v1/agents/later")[0] == 404
        status, body = _http(
            node.url("api", "/api/v1/messages?wait=5s"), message("echo", 1), "application/json"
        )
        assert status == 200, body
        code, stderr = node.stop()
        assert code == 0, stderr
