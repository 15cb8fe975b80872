"""``log_retention_days = 0`` means "keep rotated logs forever", in the validator as in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from caxton.config import load_config
from caxton.errors import ConfigError
from caxton.observability import configure_logging

from .conftest import WriteConfig

OLD = "caxton.log.2001-01-01"


def _node_logs(write_config: WriteConfig, log_dir: Path, days: int) -> list[str]:
    log_dir.mkdir(exist_ok=True)
    (log_dir / OLD).write_text("a rotated file from long ago\n")
    path = write_config(
        f'[observability]\nlog_file = "{log_dir / "caxton.log"}"\nlog_retention_days = {days}\n'
    )
    config = load_config(path, environ={})
    assert config.observability.log_retention_days == days
    setup = configure_logging(config.observability)  # retention runs at start
    setup.close()
    return sorted(p.name for p in log_dir.iterdir())


def test_zero_keeps_rotated_files_forever(write_config: WriteConfig, tmp_path: Path) -> None:
    assert OLD in _node_logs(write_config, tmp_path / "logs", 0)


def test_a_positive_number_deletes_older_files(write_config: WriteConfig, tmp_path: Path) -> None:
    assert OLD not in _node_logs(write_config, tmp_path / "logs", 30)


def test_a_negative_number_is_refused(write_config: WriteConfig) -> None:
    path = write_config("[observability]\nlog_retention_days = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    (line,) = info.value.details["errors"]
    assert "observability.log_retention_days" in line
    assert "0 keeps forever" in line


def test_the_docs_say_what_zero_means() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert "0 keeps rotated files forever" in (docs / "observability.md").read_text()
    configuration = (docs / "configuration.md").read_text()
    row = next(r for r in configuration.splitlines() if r.startswith("| `log_retention_days`"))
    assert "integer ≥ 0" in row
    assert "`0` keeps them forever" in row
