"""Fixtures of the container tests: the image, built once per run, and the figures they print."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ops import podman as pm


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
