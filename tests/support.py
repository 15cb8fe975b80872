"""What the test packages share: where things are, fixture modules, a fast runtime, polling."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import wasmtime

from caxton.config.schema import RuntimeConfig

ROOT = Path(__file__).resolve().parents[1]
WAT = ROOT / "tests" / "fixtures" / "wat"
EXAMPLES = ROOT / "examples" / "agents"
SDK = ROOT / "sdk" / "c"

#: Runtime settings for tests: two workers, short timeouts, small memory, a small mailbox.
FAST = RuntimeConfig(
    max_concurrent_executions=2,
    execution_timeout=0.3,
    agent_startup_timeout=0.3,
    agent_shutdown_timeout=2.0,
    wasm_memory_limit=8 * 1024 * 1024,
    mailbox_capacity=64,
    gc_interval=3600.0,
)

T = TypeVar("T")


def fast_runtime(**changes: Any) -> RuntimeConfig:
    """`FAST` with some fields changed."""
    return dataclasses.replace(FAST, **changes)


def wat(name: str) -> bytes:
    """A WAT fixture (tests/fixtures/wat/NAME.wat) compiled to binary."""
    return bytes(wasmtime.wat2wasm((WAT / f"{name}.wat").read_text()))


def example(name: str) -> bytes:
    """A committed example agent (examples/agents/NAME.wasm)."""
    return (EXAMPLES / f"{name}.wasm").read_bytes()


def message(receiver: str, content: Any = None, **fields: Any) -> bytes:
    """A request from the test client ("client") to ``receiver``."""
    body = {"receiver": receiver, "sender": "client", "performative": "request"}
    body["content"] = content
    body.update(fields)
    return json.dumps(body).encode()


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    within: float = 5.0,
    *,
    what: str = "the condition was met",
) -> T:
    """Poll ``check`` until it returns something true, and return that.

    For state that changes with no event to wait for (a worker thread's counters, rows the
    storage writer commits). Raises `AssertionError` naming ``what`` if it has not after
    ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)


def wait_until(
    check: Callable[[], T | None],
    within: float = 10.0,
    *,
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
    what: str | Callable[[], str] = "the condition was met",
) -> T:
    """Poll ``check`` until it returns something true, and return that: the blocking twin of
    `eventually`, for waiting on another process (a node over HTTP, its log, its files).

    ``check`` raising one of ``retry_on`` (say `OSError` while the process starts listening)
    counts as not yet; anything else it raises (an assertion that the process is still alive)
    ends the wait. Raises `AssertionError` naming ``what`` (or what it returns, e.g. the
    process's output) if ``check`` has not succeeded after ``within`` seconds.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
        except retry_on:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"not within {within} s: {told}")
        time.sleep(interval)


async def next_event(ws: aiohttp.ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next ``/api/v1/events`` frame of one of ``types`` (others, heartbeats included unless
    asked for, are skipped)."""
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        event: dict[str, Any] = json.loads(msg.data)
        if event["type"] in types:
            return event


def tool(name: str, package: str) -> str:
    """The path of a system tool the tests run for real (also looked for in the sbin folders,
    which a non-root PATH may lack); the test fails, naming the Debian package, without it."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(
            f"{name} is not installed: apt-get install {package} (scripts/test installs it)"
        )
    return path
