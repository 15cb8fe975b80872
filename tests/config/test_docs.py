"""docs/configuration.md stays true: every key documented, the shown default loads as it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from caxton.config import load_config
from caxton.config._fields import SECTIONS

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_key_has_a_row_saying_whether_it_is_acted_on() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name, spec in SECTIONS.items():
        section = text.split(f"### `[{name}]`")[1].split("\n### ")[0]
        for key in spec.keys:
            row = re.search(rf"^\| `{key}` \|.*\|$", section, re.MULTILINE)
            assert row is not None, f"{name}.{key} is not documented"
            acted_on = row.group(0).rstrip("| ").rsplit("|", 1)[1].strip()
            assert acted_on.startswith(("yes", "accepted, not yet acted on", "validated now"))


def test_documented_embedded_default_is_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DOC.read_text(encoding="utf-8").split("## The embedded default")[1]
    block = text.split("```toml\n")[1].split("```")[0]
    path = tmp_path / "default.toml"
    path.write_text(block, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config(path, environ={}) == load_config(environ={}).replace(source=path.resolve())
