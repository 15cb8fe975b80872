"""Free loopback ports for the benchmarks that start servers (imported as a script's sibling)."""

from __future__ import annotations

import socket

#: Every port handed out in this process: the kernel may offer a port it just freed again,
#: and two listeners (a node's API and its route port) would then clash.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, never the same twice per process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
