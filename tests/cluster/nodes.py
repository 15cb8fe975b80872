"""Real `caxton serve` processes forming one cluster, and what each of them sees of the others.

::

    with Cluster(tmp_path, 3) as cluster:           # configs: one seed list, probe 0.2 s
        cluster.start()                             # all at once, each ready
        cluster.wait_views(lambda views: ...)       # {observer: {member: state}}, bounded
        cluster.kill(2); cluster.restart(2)

With a `Netns` (tests/cluster/netns.py) the nodes run inside it, node ``i`` under group
``BASE_GID + i`` with its route port at ``7946 + i`` (the seed's port; the namespace is
private), and `Cluster.isolate` cuts one node's routes both ways. Each node's view comes from
its admin ``GET /status`` (``cluster.members``), read from inside the namespace.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.nodeproc import NodeProcess, free_port
from tests.support import wait_until

from .netns import Netns, gid_prefix

__all__ = ["BASE_GID", "Cluster", "ClusterNode", "Views"]

#: Node i runs under group BASE_GID + i inside a namespace.
BASE_GID = 3000
#: Node i's route port inside a namespace (the seed's 7946 for node 0).
BASE_ROUTE_PORT = 7946
#: {observer node: {member: state}}
Views = dict[str, dict[str, str]]


class ClusterNode(NodeProcess):
    """One node of a `Cluster`: its index, route port, group and namespace."""

    def __init__(self, config_path: Path, *, index: int, route_port: int, ns: Netns | None) -> None:
        prefix = [] if ns is None else [*ns.exec_prefix, *gid_prefix(BASE_GID + index)]
        super().__init__(config_path, prefix=prefix)
        self.index = index
        self.route_port = route_port
        self.ns = ns
        self.name = ""
        self.log_path = config_path.parent / "logs" / "caxton.log"

    @property
    def gid(self) -> int:
        return BASE_GID + self.index

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, listener: str, path: str) -> tuple[int, bytes]:
        if self.ns is None:
            return super().get(listener, path)
        return self.ns.call(NodeProcess.get, self, listener, path)

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """An API request with a JSON body (or none); returns (status, decoded JSON body)."""
        if self.ns is None:
            return _call(self.url("api", path), method, body, timeout)
        return self.ns.call(_call, self.url("api", path), method, body, timeout)

    def cluster_status(self) -> dict[str, Any]:
        status, body = self.get("admin", "/status")
        assert status == 200, body
        cluster: dict[str, Any] = json.loads(body)["cluster"]
        return cluster

    def members(self) -> dict[str, dict[str, Any]]:
        """The members this node knows, by name (itself included)."""
        return {member["name"]: member for member in self.cluster_status()["members"]}

    def log_lines(self, logger: str) -> list[str]:
        """The messages of `logger` in this node's log file, in order."""
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        return [str(r["message"]) for r in records if r.get("logger") == logger]


class Cluster:
    """`size` node configs in `directory` with one seed list; `start` runs them."""

    def __init__(
        self,
        directory: Path,
        size: int,
        *,
        ns: Netns | None = None,
        probe_interval: float = 0.2,
        seeds: Callable[[int], Sequence[int]] | None = None,
        gossip_interval: float | None = None,
    ) -> None:
        """``seeds(i)``: the indices node i lists as seeds (default: every node);
        ``gossip_interval``: the registry's digest period (default: the config's default)."""
        self.ns = ns
        self.probe_interval = probe_interval
        ports = [BASE_ROUTE_PORT + i if ns else free_port() for i in range(size)]
        self.nodes: list[ClusterNode] = []
        for index, port in enumerate(ports):
            listed = range(size) if seeds is None else seeds(index)
            seed_ports = [ports[i] for i in listed]
            path = _config(
                directory / f"node{index}", port, seed_ports, probe_interval, gossip_interval
            )
            self.nodes.append(ClusterNode(path, index=index, route_port=port, ns=ns))
            if ns is not None:
                ns.mark(BASE_GID + index)  # before it starts: every connection it opens

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for node in self.nodes:
            node.__exit__()

    def __getitem__(self, index: int) -> ClusterNode:
        return self.nodes[index]

    def start(self, *indices: int, timeout: float = 30.0) -> None:
        """Start these nodes (default: all) at once and wait until each is ready."""
        chosen = [self.nodes[i] for i in indices] if indices else self.nodes
        for node in chosen:
            node.start(wait=False)
        for node in chosen:
            node.wait_ready(timeout)
            node.name = node.cluster_status()["node_name"]

    def kill(self, index: int, sig: int = signal.SIGKILL) -> float:
        """Send `sig` to node `index` and wait until it exited; returns the wall time sent."""
        node = self.nodes[index]
        assert node.proc is not None
        sent = time.time()
        node.proc.send_signal(sig)
        node.proc.communicate(timeout=15)
        return sent

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def views(self, observers: Iterable[ClusterNode] | None = None) -> Views:
        """What each running node (or each of `observers`) sees: {observer: {member: state}}."""
        chosen = self.running() if observers is None else list(observers)
        return {
            node.name: {name: m["state"] for name, m in node.members().items()} for node in chosen
        }

    def wait_views(
        self,
        check: Callable[[Views], bool],
        timeout: float,
        *,
        observers: Iterable[ClusterNode] | None = None,
        what: str = "the members' states",
    ) -> Views:
        """Poll `views` until `check` holds (at most `timeout` s); returns the last views."""
        chosen = None if observers is None else list(observers)
        seen: list[Views] = [{}]

        def holds() -> bool:
            seen[0] = self.views(chosen)
            return check(seen[0])

        try:
            wait_until(holds, timeout, interval=0.05, retry_on=(OSError,), what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last views: {seen[0]}") from None
        return seen[0]

    def all_alive(self, timeout: float = 15.0) -> Views:
        """Wait until every running node sees every running node alive (and nothing else)."""
        names = {node.name for node in self.running()}

        def alive(views: Views) -> bool:
            return all(
                set(view) == names and set(view.values()) == {"alive"} for view in views.values()
            )

        return self.wait_views(alive, timeout, what="every node sees every node alive")

    def isolate(self, index: int) -> list[list[str]]:
        """Cut node `index`'s routes to every other node, both ways (needs a namespace)."""
        assert self.ns is not None, "partitions need the cluster in a network namespace"
        node = self.nodes[index]
        peers = [other.route_port for other in self.nodes if other is not node]
        return self.ns.isolate(gid=node.gid, port=node.route_port, peers=peers)


def _call(url: str, method: str, body: Any, timeout: float) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _config(
    directory: Path,
    route_port: int,
    seeds: Sequence[int],
    probe: float,
    gossip: float | None = None,
) -> Path:
    """A cluster node's config: loopback listeners, route port, seeds (ports on 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    gossip_line = "" if gossip is None else f'gossip_interval = "{gossip * 1000:g}ms"'
    ports = {name: free_port() for name in ("api", "metrics", "admin")}
    listed = ", ".join(f'"127.0.0.1:{seed}"' for seed in seeds)
    path = directory / "caxton.toml"
    path.write_text(
        f"""
[networking]
bind_address = "127.0.0.1:{ports["api"]}"
metrics_address = "127.0.0.1:{ports["metrics"]}"
admin_address = "127.0.0.1:{ports["admin"]}"

[coordination]
local_state_path = "{directory / "data" / "local.db"}"
cluster_enabled = true
bind_addr = "127.0.0.1:{route_port}"
seeds = [{listed}]
probe_interval = "{probe * 1000:g}ms"
{gossip_line}

[observability]
log_level = "info"
log_format = "json"
log_file = "{directory / "logs" / "caxton.log"}"
""",
        encoding="utf-8",
    )
    return path
