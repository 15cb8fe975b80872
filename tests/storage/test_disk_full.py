"""A full disk under a real node: no acknowledged write is lost.

The disk is made full with ``RLIMIT_FSIZE`` on the node process (set from here with
``prlimit``, no root, nothing else on the machine affected): a write past the limit fails as a
write to a full disk does (SQLite answers ``SQLITE_FULL``; Python ignores ``SIGXFSZ``).
Raising the limit again is "space returns".
"""

from __future__ import annotations

import base64
import json
import os
import resource
import sqlite3
import struct
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from caxton.runtime import abi
from tests.nodeproc import NodeProcess, write_config
from tests.support import wait_until

COUNT = 400  # keys one message writes
VALUE = 16000  # bytes per value (the key's 4 bytes, then zeros)

# kvfill: each message writes COUNT keys (4-byte little-endian numbers, going on from message
# to message) with kv_set, then logs "fill:" and one character per key: '0' - kv_set's result.
KVFILL = f"""
(module
  (import "caxton" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 8187) "fill:")
  (global $next (mut i32) (i32.const 0))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 32768)) (then unreachable))
    (i32.const 65536))
  (func (export "caxton_handle") (param $ptr i32) (param $len i32) (result i32)
    (local $j i32) (local $rc i32)
    (loop $write
      (i32.store (i32.const 0) (global.get $next))
      (i32.store (i32.const 16384) (global.get $next))
      (local.set $rc
        (call $kv_set (i32.const 0) (i32.const 4) (i32.const 16384) (i32.const {VALUE})))
      (i32.store8 (i32.add (i32.const 8192) (local.get $j))
                  (i32.sub (i32.const 48) (local.get $rc)))
      (global.set $next (i32.add (global.get $next) (i32.const 1)))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br_if $write (i32.lt_u (local.get $j) (i32.const {COUNT}))))
    (call $log (i32.const 1) (i32.const 8187) (i32.const {COUNT + 5}))
    (i32.const 0)))
"""


def value(key: int) -> bytes:
    return struct.pack("<I", key) + bytes(VALUE - 4)


def request(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(node.url("api", path), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def fill(node: NodeProcess, done: int) -> list[int]:
    """Send one message to kvfill; the kv_set results of its COUNT writes, in order."""
    status, body = request(
        node, "POST", "/api/v1/messages", {"receiver": "kvfill", "performative": "request"}
    )
    assert status == 202, body

    def line() -> str | None:
        _, logs = request(node, "GET", "/api/v1/agents/kvfill/logs?n=50")
        fills = [entry["text"] for entry in logs["lines"] if entry["text"].startswith("fill:")]
        return fills[done] if len(fills) > done else None

    text: str = wait_until(line, 20, interval=0.1)
    return [48 - ord(c) for c in text[5:]]


def largest_file(*directories: Path) -> int:
    return max(p.stat().st_size for d in directories for p in d.rglob("*") if p.is_file())


def stored(db: Path) -> dict[int, bytes]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT key, value FROM kv WHERE name = 'kvfill'").fetchall()
    return {struct.unpack("<I", key)[0]: bytes(v) for key, v in rows}


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_a_full_disk_fails_writes_loudly_once_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace('log_level = "debug"', 'log_level = "info"')
    config.write_text(text)
    settings = tomllib.loads(text)
    db = Path(settings["coordination"]["local_state_path"])
    log_file = Path(settings["observability"]["log_file"])
    wasm = base64.b64encode(wasmtime.wat2wasm(KVFILL)).decode()

    with NodeProcess(config).start() as node:
        assert node.proc is not None
        status, body = request(node, "POST", "/api/v1/agents", {"name": "kvfill", "wasm": wasm})
        assert status == 201, body

        # The disk is full ~256 KiB past the largest file the node has (unaligned on purpose:
        # the write that reaches it is cut short, as on a real full disk).
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        limit = largest_file(db.parent, log_file.parent) + 256 * 1024 + 123
        resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
        try:
            first = fill(node, 0)
            # Every write was answered: stored, or the storage error code (nothing kept).
            assert set(first) <= {abi.OK, abi.ERR_STORAGE}, first
            assert abi.OK in first
            assert abi.ERR_STORAGE in first
            # Not a byte more: small writes that still fit below the limit no longer do.
            limit = largest_file(db.parent, log_file.parent)
            resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
            time.sleep(4)  # longer than the store takes to call writes healthy again
            status, body = node.get("api", "/ready")
            assert status == 503
            error = json.loads(body)["error"]
            assert error["details"]["checks"]["storage"] is False
            assert error["details"]["reasons"]["storage"].startswith("cannot write (disk full")
            assert "storage: cannot write (disk full" in error["message"]
            # /ready needs no token: the kind of problem, not where the state file lives.
            assert str(db.parent) not in body.decode()
            status, body = node.get("admin", "/status")
            assert str(db) in json.loads(body)["reasons"]["storage"]  # loopback only
        finally:
            resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))

        # Space is back: ready again without any other traffic, and writes succeed.
        wait_until(lambda: node.get("api", "/ready")[0] == 200, 10, interval=0.1)
        second = fill(node, 1)
        assert second == [abi.OK] * COUNT
        code, err = node.stop()
        assert code == 0, err

    kept = stored(db)
    for key, rc in enumerate(first + second):
        if rc == abi.OK:
            assert kept.get(key) == value(key), f"acknowledged key {key} is missing"
        else:
            assert key not in kept, f"key {key} was refused but stored"
    log = log_file.read_text()
    full = [line for line in log.splitlines() if "disk full" in line]
    assert len(full) == 1, full
    assert "can be written again" in log
    assert "no such savepoint" not in log
    assert "Traceback" not in log  # one line for the episode, not a traceback per failure

    # A restart finds every acknowledged write (the first message may be delivered again: its
    # completion could not be written while the disk was full).
    with NodeProcess(config).start() as node:
        code, err = node.stop()
        assert code == 0, err
    kept = stored(db)
    for key, rc in enumerate(first + second):
        if rc == abi.OK:
            assert kept.get(key) == value(key), f"acknowledged key {key} is missing"
    assert os.path.exists(db)
