"""bench/bench_cluster_rss.py runs (a tiny cluster, a few agents) and prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def test_the_rss_bench_deploys_over_every_node_and_reports_each_node() -> None:
    bench = str(ROOT / "bench" / "bench_cluster_rss.py")
    done = subprocess.run(
        [sys.executable, bench, "--agents", "20", "--nodes", "2", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["agents"], result["nodes"]) == (20, 2)
    assert [node["agents_hosted"] for node in result["per_node"]] == [10, 10]
    assert all(node["rss_mb"] > 0 and node["nats_server_rss_mb"] > 0 for node in result["per_node"])
