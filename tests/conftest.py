"""Shared fixtures: a scrubbed environment and a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

_CAXTON_ENV = (
    "CAXTON_CONFIG_PATH",
    "CAXTON_LOG_LEVEL",
    "CAXTON_METRICS_ENABLED",
    "CAXTON_NATS_SERVER",
    "CAXTON_SERVER",
    "CAXTON_TOKEN",
    "JWT_SECRET",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's CAXTON_* variables."""
    for name in _CAXTON_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty directory for one node's state."""
    path = tmp_path / "caxton-data"
    path.mkdir()
    return path
