"""Run a real `caxton` node process on loopback ports for end-to-end tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import wait_until

#: Every port `free_port` handed out in this process: the kernel may offer a port it just
#: freed again, and two listeners of one config (or two nodes) would then clash.
_HANDED_OUT: set[int] = set()


def _listen_range() -> range:
    """Ports for the tests' listeners: outside the kernel's ephemeral range, so that no
    outgoing connection (of this suite or of anything else on the machine) takes a port between
    the moment it is chosen here and the moment a node binds it."""
    low, high = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(part) for part in fh.read().split())
    except (OSError, ValueError):
        pass
    return range(10000, low) if low - 10000 >= 4096 else range(high + 1, 65536)


_LISTEN_PORTS = _listen_range()
_random = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never the same one twice in
    a test run (`_listen_range`)."""
    while True:
        port = _random.choice(_LISTEN_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def write_config(
    directory: Path,
    extra: str = "",
    *,
    networking: str = "",
    coordination: str = "",
    log_level: str = "debug",
) -> Path:
    """A config file with fresh loopback ports and state under `directory`.

    ``extra`` is appended (whole sections); ``networking`` is added to ``[networking]``,
    ``coordination`` to ``[coordination]``.
    """
    ports = {name: free_port() for name in ("api", "metrics", "admin")}
    text = f"""
[networking]
{networking}
bind_address = "127.0.0.1:{ports["api"]}"
metrics_address = "127.0.0.1:{ports["metrics"]}"
admin_address = "127.0.0.1:{ports["admin"]}"

[coordination]
local_state_path = "{directory / "data" / "local.db"}"
{coordination}

[observability]
log_level = "{log_level}"
log_format = "json"
log_file = "{directory / "logs" / "caxton.log"}"
"""
    path = directory / "caxton.toml"
    path.write_text(text + extra)
    return path


@dataclass
class NodeProcess:
    """A `caxton serve` subprocess."""

    config_path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    #: A command the node runs under (``ip netns exec NS``, ``setpriv --regid G``...).
    prefix: list[str] = field(default_factory=list)

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> NodeProcess:
        env = {**os.environ, **self.env}
        cmd = [*self.prefix, sys.executable, "-m", "caxton", *(self.args or ["serve", "--config"])]
        if not self.args:
            cmd.append(str(self.config_path))
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.__exit__()
                raise
        return self

    def url(self, listener: str, path: str) -> str:
        import tomllib

        cfg = tomllib.loads(self.config_path.read_text())
        key = {"api": "bind_address", "metrics": "metrics_address", "admin": "admin_address"}
        tls = listener == "api" and cfg["networking"].get("tls_enabled")
        scheme = "https" if tls else "http"
        return f"{scheme}://{cfg['networking'][key[listener]]}{path}"

    def rss(self) -> int:
        """The node process's resident set size, in bytes."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def get(self, listener: str, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(listener, path), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                _out, err = self.proc.communicate()
                raise AssertionError(
                    f"node exited with {self.proc.returncode}: {err.decode(errors='replace')}"
                )
            return self.get("api", "/ready")[0] == 200

        wait_until(ready, timeout, retry_on=(OSError,), what="the node became ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("node did not stop in time") from None
        return self.proc.returncode, err.decode(errors="replace")

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
