"""Backups of a running node's state, by the CLI and by the deployment guide's script."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.slow


def _caxton(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caxton", *args], capture_output=True, text=True, timeout=60
    )


class _Writer(threading.Thread):
    """Keeps writing rows into the node's state file (concurrent write load).

    About 200 commits a second, like a busy node's group commits. (SQLite restarts an online
    backup taken in steps, as the sqlite3 shell's ``.backup`` does, when another connection
    commits between two steps; docs/operations.md says so.)
    """

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS load_test (n INTEGER PRIMARY KEY, pad BLOB)")
        while not self.stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(50):
                self.written += 1
                conn.execute("INSERT INTO load_test VALUES (?, zeroblob(512))", (self.written,))
            conn.execute("COMMIT")
            self.stop.wait(0.005)
        conn.close()


def _check_copy(path: Path) -> tuple[str, int]:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        node_id = conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]
        rows = [r[0] for r in conn.execute("SELECT n FROM load_test ORDER BY n")]
    assert rows == list(range(1, len(rows) + 1)), "the copy is not a consistent prefix"
    return node_id, len(rows)


def test_backup_while_running_and_restore_after_stop(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    db = tmp_path / "data" / "local.db"
    backups = tmp_path / "backups"
    backups.mkdir()
    with NodeProcess(cfg).start() as node:
        writer = _Writer(db)
        writer.start()
        try:
            while writer.written < 2000:
                pass
            made = _caxton("backup", "create", str(backups / "state.db"), "--gzip", "-c", str(cfg))
            assert made.returncode == 0, made.stderr
            # The deployment guide's script, verbatim in spirit.
            seed = subprocess.run(
                ["sqlite3", str(db), f".backup '{backups / 'seed.db'}'"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert seed.returncode == 0, seed.stderr
        finally:
            writer.stop.set()
            writer.join()

        plain = backups / "state.db"
        with gzip.open(backups / "state.db.gz") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        node_id, rows = _check_copy(plain)
        assert rows >= 2000
        seed_id, _ = _check_copy(backups / "seed.db")
        assert seed_id == node_id

        refused = _caxton("backup", "restore", str(backups / "state.db.gz"), "-c", str(cfg))
        assert refused.returncode == 4
        assert "stop the node" in refused.stderr
        code, _ = node.stop()
        assert code == 0

    restored = _caxton("backup", "restore", str(backups / "state.db.gz"), "-c", str(cfg))
    assert restored.returncode == 0, restored.stderr
    assert _check_copy(db) == (node_id, rows)
    with NodeProcess(cfg).start() as again:
        assert again.get("api", "/ready")[0] == 200
        assert again.stop()[0] == 0
    assert _check_copy(db)[0] == node_id
