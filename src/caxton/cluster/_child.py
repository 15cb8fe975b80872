"""One nats-server process: started so that it dies with the node, its log passed on.

`spawn` starts the binary in its own session with ``PR_SET_PDEATHSIG`` = SIGTERM set in the
child before ``exec``, so that a ``kill -9`` of the node (which runs no cleanup) still stops
nats-server and frees its ports, while a Ctrl-C meant for the node does not reach it.
`pump_log` reads the child's output and logs each line on ``caxton.cluster.nats`` at the level
nats-server gave it, keeping the last lines for error messages.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

__all__ = ["LOGGER", "parse_line", "pump_log", "spawn"]

LOGGER = logging.getLogger("caxton.cluster.nats")

_PR_SET_PDEATHSIG = 1
#: ``[pid] [LVL] text``, or with a time stamp between pid and level when ``logtime`` is on.
_LINE = re.compile(r"^\[\d+\] (?:[\d/]+ [\d:.]+ )?\[(?P<level>[A-Z]{3})\] (?P<text>.*)$")
_LEVELS = {
    "TRC": logging.DEBUG,
    "DBG": logging.DEBUG,
    "INF": logging.INFO,
    "WRN": logging.WARNING,
    "ERR": logging.ERROR,
    "FTL": logging.CRITICAL,
}


def _die_with(parent: int) -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: ask for SIGTERM when the parent dies, unless it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        os._exit(126)
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


async def spawn(binary: Path, config_file: Path) -> asyncio.subprocess.Process:
    """Start ``binary -c config_file`` with its stderr piped (stdout too: nats-server is quiet).

    Raises:
        OSError: the binary cannot be started (missing, not executable, not a program).
    """
    parent = os.getpid()
    preexec = (lambda: _die_with(parent)) if sys.platform == "linux" else None
    return await asyncio.create_subprocess_exec(
        str(binary),
        "-c",
        str(config_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=preexec,
        # Its own session: a Ctrl-C to the node's terminal (SIGINT to the foreground process
        # group) must not stop nats-server before the node has shut down in order.
        start_new_session=True,
    )


def parse_line(line: str) -> tuple[int, str]:
    """(logging level, text) of one nats-server log line; an unknown shape is INFO as is."""
    match = _LINE.match(line)
    if match is None:
        return logging.INFO, line
    return _LEVELS.get(match["level"], logging.INFO), match["text"]


async def pump_log(
    process: asyncio.subprocess.Process,
    tail: deque[str],
    *,
    name: str,
    observe: Callable[[str], object] | None = None,
) -> None:
    """Log every line of `process`'s output until it closes; the last ones go into `tail`,
    and each one (its text) to `observe`."""
    stream = process.stdout
    if stream is None:
        return
    while line := await stream.readline():
        text = line.decode("utf-8", "replace").rstrip()
        if not text:
            continue
        level, message = parse_line(text)
        tail.append(message)
        LOGGER.log(level, "%s", message, extra={"nats_server": name, "pid": process.pid})
        if observe is not None:
            observe(message)
