"""`./scripts/test` keeps a plain `pip install .` plain (it used to make it editable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mode(site: Path) -> str:
    """What scripts/install_mode.py says, with ``site`` first on the path (a fake install)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "install_mode.py")],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def _installed(tmp_path: Path, direct_url: dict[str, object] | None) -> Path:
    """A site directory holding a caxton dist-info as pip writes it (PEP 610 direct_url.json)."""
    info = tmp_path / "site" / "caxton-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: caxton\nVersion: 0.1.0\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return info.parent


@pytest.mark.parametrize(
    ("direct_url", "mode"),
    [
        ({"url": "file:///src/caxton", "dir_info": {}}, "plain"),  # pip install .
        ({"url": "file:///src/caxton", "dir_info": {"editable": True}}, "editable"),  # -e .
        (None, "plain"),  # from a wheel or an index
    ],
)
def test_the_install_mode_is_read_from_pip_metadata(
    tmp_path: Path, direct_url: dict[str, object] | None, mode: str
) -> None:
    assert _mode(_installed(tmp_path, direct_url)) == mode


def test_no_caxton_installed(tmp_path: Path) -> None:
    isolated = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "scripts" / "install_mode.py")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert isolated.stdout.strip() == "none"  # no site-packages: nothing installed


def test_scripts_test_installs_the_way_it_found_caxton() -> None:
    script = (ROOT / "scripts" / "test").read_text()
    assert "install_mode=$(python3 scripts/install_mode.py)" in script
    plain = script.split('if [ "$install_mode" = plain ]; then', 1)[1].split("else", 1)[0]
    assert "'.[test]'" in plain
    assert "-e" not in plain.replace("--", "")  # a plain install is not made editable
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec ./scripts/test")


def test_the_tests_and_the_benchmarks_are_type_checked_strictly() -> None:
    """``mypy`` (from the pyproject) and `./scripts/test` check tests/ and bench/ as well as
    the package, under the same strict settings."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert {"src/caxton", "tests", "bench"} <= set(config["files"])
    mypy_lines = [
        line for line in (ROOT / "scripts" / "test").read_text().splitlines() if " mypy " in line
    ]
    assert len(mypy_lines) == 1, mypy_lines
    checked = mypy_lines[0].split(" -m mypy ", 1)[1].split()
    assert {"src/caxton", "tests", "bench"} <= set(checked)
