"""bench/bench_cluster.py says which machine its figures come from."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_cluster.py"


def test_the_cluster_bench_reports_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH.parent))  # as when run as a script: its siblings
    spec = importlib.util.spec_from_file_location("bench_cluster", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    machine = module.machine()
    assert machine["cpus"] == os.cpu_count()
    assert isinstance(machine["cpu_model"], str)
    assert machine["cpu_model"]
    assert machine["system"]
