"""Only what uses the JWT secret needs it: a backup job or `config show` runs without it.

`serve` and `token create` sign or check tokens, and `config check` reports a missing secret;
`config show` and `backup create|restore` never use it, so ``auth_enabled = true`` with an
unset ``${JWT_SECRET}`` must not stop them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from caxton.storage import Storage

pytestmark = pytest.mark.slow


def _caxton(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    if secret is not None:
        env["JWT_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "caxton", *args], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    state = tmp_path / "data" / "local.db"
    Storage.open_sync(state).close()  # a real (empty) state file to back up
    path = tmp_path / "production.toml"
    path.write_text(
        f"""
[coordination]
local_state_path = "{state}"

[security]
auth_enabled = true
jwt_secret = "${{JWT_SECRET}}"
"""
    )
    return path


def test_backup_and_config_show_run_without_the_secret(config: Path, tmp_path: Path) -> None:
    shown = _caxton("config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "auth_enabled = true" in shown.stdout

    dest = tmp_path / "backups" / "state.db"
    backup = _caxton("backup", "create", str(dest), "--config", str(config))
    assert backup.returncode == 0, backup.stderr
    assert dest.exists()
    restore = _caxton("backup", "restore", str(dest), "--config", str(config))
    assert restore.returncode == 0, restore.stderr


def test_what_uses_the_secret_still_needs_it(config: Path) -> None:
    check = _caxton("config", "check", str(config))
    assert check.returncode == 2
    assert "JWT_SECRET is not set" in check.stderr
    token = _caxton("token", "create", "--config", str(config))
    assert token.returncode == 2
    assert "JWT_SECRET" in token.stderr
    serve = _caxton("serve", "--config", str(config))
    assert serve.returncode == 2
    assert "JWT_SECRET is not set" in serve.stderr

    secret = "a-long-enough-secret-for-the-tests-0123456789"
    assert _caxton("config", "check", str(config), secret=secret).returncode == 0
    made = _caxton("token", "create", "--config", str(config), secret=secret)
    assert made.returncode == 0, made.stderr
