"""Fixtures for the configuration tests: the seed's files, made loadable on this machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

#: What the tests export as JWT_SECRET; no error message may ever contain it.
SECRET = "s3cret-JWT-value-never-printed"

WriteConfig = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write TOML text to ``production.toml`` in a temporary directory and return the path."""

    def write(text: str) -> Path:
        path = tmp_path / "production.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def production_file(tmp_path: Path) -> Path:
    """The seed's production.toml with /opt/caxton moved under tmp_path and the TLS files made.

    Only the paths change, so every other key is exactly what the seed shows operators.
    """
    root = tmp_path / "opt" / "caxton"
    (root / "config").mkdir(parents=True)
    for name in ("server.crt", "server.key", "ca.crt"):
        (root / "config" / name).write_text("PEM\n")
    text = (FIXTURES / "production.toml").read_text(encoding="utf-8")
    path = root / "config" / "production.toml"
    path.write_text(text.replace("/opt/caxton/", f"{root}/"), encoding="utf-8")
    return path
