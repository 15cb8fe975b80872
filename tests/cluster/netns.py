"""A private network namespace for real partitions on one machine (as root).

::

    with Netns() as ns:                       # `ip netns add`, its own 127.0.0.1 (lo up)
        ns.mark(3001)                         # before the node starts
        proc = subprocess.Popen([*ns.exec_prefix, *gid_prefix(3001), "caxton", ...])
        ns.call(urllib.request.urlopen, url)  # a client inside the namespace
        rules = ns.isolate(gid=3001, port=7946, peers=[7947, 7948])
        ...                                   # node 1's routes are cut both ways
        ns.heal(rules)

Each node runs under its own group id (`gid_prefix`: ``setpriv --regid``), so its nats-server
child does too, and `Netns.mark` (before it starts) marks every connection its processes send
on (an ``owner`` match sets a connection mark). `Netns.isolate` silently drops, both ways,
every packet to or from the node's route port and every packet of a marked connection to or
from another route port (a ``connmark`` match): a live but isolated server, what a real
partition looks like, while the node's client and HTTP ports keep working.
`Netns.heal` deletes those rules. Closing the namespace kills every process left in it and
deletes it (rules included); an empty one left by a killed test run is deleted by the next.
`Netns.call` runs a function in a thread that entered the namespace, so the sockets it opens
are inside it. `why_not` says why this cannot run here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = ["Netns", "gid_prefix", "why_not"]

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
#: The iptables front ends tried, in order: the first that takes an owner and a connmark rule
#: inside the namespace is used (the nft one is the Debian default; legacy where nft is missing).
IPTABLES = ("iptables", "iptables-nft", "iptables-legacy")
#: Seconds any one `ip`/`iptables` command may take.
COMMAND_TIMEOUT = 10.0


def why_not() -> str | None:
    """Why partitions cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root: network namespaces and iptables rules (run the tests as root)"
    for tool, package in (("ip", "iproute2"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian package {package})"
    if not any(shutil.which(name) for name in IPTABLES):
        return "needs iptables (Debian package iptables)"
    return None


def gid_prefix(gid: int) -> list[str]:
    """The command prefix that runs a process (and its children) under group `gid` only."""
    return ["setpriv", f"--regid={gid}", "--clear-groups"]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def _check(*command: str) -> None:
    done = _run(*command)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")


class Netns:
    """A network namespace this process created; closing it ends everything inside."""

    def __init__(self, prefix: str = "caxton-test", *, iptables: Sequence[str] = IPTABLES) -> None:
        """``iptables``: the front ends to try, in order (the first that works is used)."""
        self.name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.iptables = ""
        self._candidates = tuple(iptables)
        self._pool: ThreadPoolExecutor | None = None
        self._created = False
        self._marked: set[int] = set()

    @property
    def exec_prefix(self) -> list[str]:
        """The command prefix that runs a process inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> Netns:
        reason = why_not()
        if reason is not None:
            raise RuntimeError(f"cannot make a network namespace: {reason}")
        self._remove_stale()
        _check("ip", "netns", "add", self.name)
        self._created = True
        try:
            _check("ip", "-n", self.name, "link", "set", "lo", "up")
            self.iptables = self._pick_iptables()
            self._pool = ThreadPoolExecutor(
                max_workers=4, initializer=self._enter, thread_name_prefix=self.name
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _remove_stale(self) -> None:
        """Delete the empty namespaces of this prefix left by a test process that was killed."""
        prefix = self.name.rsplit("-", 2)[0]
        for line in _run("ip", "netns", "list").stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            owner = name[len(prefix) + 1 :].split("-")[0]
            if not name.startswith(f"{prefix}-") or not owner.isdigit():
                continue
            if Path(f"/proc/{owner}").exists() or _run("ip", "netns", "pids", name).stdout:
                continue  # its test still runs, or something still lives in it: leave it
            _run("ip", "netns", "del", name)

    def _enter(self) -> None:
        """Move the calling thread (a pool worker) into the namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns into {self.name}: {os.strerror(errno)}")
        finally:
            os.close(fd)

    def _pick_iptables(self) -> str:
        """The first iptables front end whose owner and connmark rules work in here."""
        tried: list[str] = []
        probe = ["-m", "owner", "--gid-owner", "1", "-j", "CONNMARK", "--set-mark", "1"]
        drop = ["-p", "tcp", "-m", "connmark", "--mark", "1", "-m", "multiport"]
        drop += ["--ports", "1", "-j", "DROP"]
        for name in self._candidates:
            if shutil.which(name) is None:
                continue
            command = [*self.exec_prefix, name]
            added = _run(*command, "-t", "mangle", "-A", "OUTPUT", *probe)
            if added.returncode == 0:
                _run(*command, "-t", "mangle", "-D", "OUTPUT", *probe)
                if _run(*command, "-A", "OUTPUT", *drop).returncode == 0:
                    _run(*command, "-D", "OUTPUT", *drop)
                    return name
            tried.append(f"{name}: {added.stderr.strip()}")
        raise RuntimeError(f"no iptables front end works in a network namespace: {tried}")

    def call(self, function: Callable[..., T], *args: object, timeout: float = 30.0) -> T:
        """``function(*args)`` in a thread inside the namespace (sockets it opens are in it)."""
        if self._pool is None:
            raise RuntimeError(f"network namespace {self.name} is not open")
        return self._pool.submit(function, *args).result(timeout)

    def mark(self, gid: int) -> None:
        """Mark the connections the processes of group `gid` open from now on (the mark is
        the gid). Do it before they start: a connection is marked only once they send on it,
        so a peer's packet could still reach them right after `isolate`. A connection keeps
        the mark of the side that sent first: were each side's packets to re-mark it, a peer
        marked too would unmark it with every packet it sends, and they would get through."""
        if gid in self._marked:
            return
        first = ["-m", "connmark", "--mark", "0", "-m", "owner", "--gid-owner", str(gid)]
        self._rule("-A", ["mangle", "OUTPUT", *first, "-j", "CONNMARK", "--set-mark", str(gid)])
        self._marked.add(gid)

    def isolate(self, *, gid: int, port: int, peers: Sequence[int]) -> list[list[str]]:
        """Cut the route traffic of the node run under `gid` whose route port is `port` from
        the route ports `peers`, both ways; returns the rules (for `heal`)."""
        self.mark(gid)
        others = ",".join(str(peer) for peer in peers)
        marked = ["-p", "tcp", "-m", "connmark", "--mark", str(gid), "-m", "multiport"]
        listener = ["-p", "tcp", "-m", "multiport", "--ports", str(port), "-j", "DROP"]
        rules = [
            ["filter", "OUTPUT", *marked, "--ports", others, "-j", "DROP"],  # its dials out
            ["filter", "OUTPUT", *listener],  # anything to or from its route listener
        ]
        added: list[list[str]] = []
        try:
            for rule in rules:
                self._rule("-I", rule)  # first: before anything that would accept
                added.append(rule)
        except BaseException:
            self.heal(added)
            raise
        return rules

    def heal(self, rules: Sequence[list[str]]) -> None:
        """Delete the rules `isolate` added."""
        for rule in rules:
            self._rule("-D", rule)

    def _rule(self, action: str, rule: list[str]) -> None:
        table, chain, *spec = rule
        _check(*self.exec_prefix, self.iptables, "-t", table, action, chain, *spec)

    def pids(self) -> list[int]:
        """The processes inside the namespace."""
        done = _run("ip", "netns", "pids", self.name)
        return [int(pid) for pid in done.stdout.split()]

    def close(self, timeout: float = 10.0) -> None:
        """Kill every process left inside, then delete the namespace (and its rules)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if not self._created:
            return
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:  # only processes this test started live in its namespace
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        _check("ip", "netns", "del", self.name)
        self._created = False
        if Path(f"/var/run/netns/{self.name}").exists():
            raise RuntimeError(f"network namespace {self.name} still exists")
