"""Fixtures of the ops tests: the container image (built once per run), the figures the container
tests print, a real single node's scrapes and a real cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.cluster.nodes import Cluster
from tests.ops import podman as pm
from tests.ops.clustered import running_cluster
from tests.ops.singlenode import Scrapes, node_scrapes


@pytest.fixture(scope="session")
def image() -> str:
    """deploy/Dockerfile built with podman (cached layers reused); skipped, with the reason,
    where containers cannot run at all."""
    try:
        pm.prepare()
    except pm.Unavailable as exc:
        pytest.skip(str(exc))
    pm.BUILD_SECONDS.append(pm.build())
    return pm.IMAGE


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Lines printed at the end of the test, past pytest's capture (the measured figures)."""
    lines: list[str] = []
    yield lines
    with capsys.disabled():
        for line in lines:
            print(f"\n[container] {line}", end="")
        print()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real 3-node cluster that carried some traffic (tests/ops/clustered.py), shared by a
    module's tests; killed at the end of the module (not of the session: idle nodes would
    still load the machine while the rest of the suite runs)."""
    directory = tmp_path_factory.mktemp("cluster")
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as mp:  # the nodes start without the caller's
            for name in list(os.environ):
                if name.startswith("CAXTON_") or name == "JWT_SECRET":
                    mp.delenv(name)
            running = stack.enter_context(running_cluster(directory))
        yield running


@pytest.fixture(scope="session")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Scrapes:
    """What a real single node's ``/metrics`` answered after some traffic
    (tests/ops/singlenode.py)."""
    return node_scrapes(tmp_path_factory.mktemp("single"))
