"""The rotating log file: periods by an injected clock, file names, retention, failures."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from caxton.clock import ManualClock
from caxton.config import ObservabilityConfig
from caxton.observability import configure_logging
from caxton.observability._rotation import RotatingLogFileHandler, Rotation


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def handlers() -> Iterator[list[RotatingLogFileHandler]]:
    made: list[RotatingLogFileHandler] = []
    yield made
    for handler in made:
        handler.close()


def open_handler(
    handlers: list[RotatingLogFileHandler],
    path: Path,
    clock: ManualClock,
    rotation: Rotation = "daily",
    retention_days: int = 30,
) -> RotatingLogFileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingLogFileHandler(
        path, rotation=rotation, retention_days=retention_days, clock=clock
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    handlers.append(handler)
    return handler


def write(handler: logging.Handler, message: str) -> None:
    handler.handle(logging.makeLogRecord({"msg": message, "levelno": 20, "levelname": "INFO"}))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_daily_rotation_at_local_midnight(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 23, 59, 59))
    handler = open_handler(handlers, log_dir / "caxton.log", clock)

    write(handler, "late on the first")
    clock.advance(seconds=1)
    write(handler, "just after midnight")

    assert names(log_dir) == ["caxton.log", "caxton.log.2024-05-01"]
    assert (log_dir / "caxton.log.2024-05-01").read_text() == "late on the first\n"
    assert (log_dir / "caxton.log").read_text() == "just after midnight\n"


def test_hourly_rotation_names_the_hour(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 13, 15))
    handler = open_handler(handlers, log_dir / "caxton.log", clock, rotation="hourly")

    write(handler, "one")
    clock.advance(minutes=30)
    write(handler, "still 13h")
    clock.advance(minutes=30)
    write(handler, "two")
    clock.advance(hours=2)
    write(handler, "three")

    assert names(log_dir) == ["caxton.log", "caxton.log.2024-05-01-13", "caxton.log.2024-05-01-14"]
    assert (log_dir / "caxton.log.2024-05-01-13").read_text() == "one\nstill 13h\n"


def test_never_keeps_one_file(handlers: list[RotatingLogFileHandler], log_dir: Path) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 12, 0))
    handler = open_handler(handlers, log_dir / "caxton.log", clock, rotation="never")

    write(handler, "a")
    clock.advance(days=3)
    write(handler, "b")

    assert names(log_dir) == ["caxton.log"]
    assert (log_dir / "caxton.log").read_text() == "a\nb\n"


def test_retention_deletes_old_rotated_files_at_start_and_on_rotation(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    log_dir.mkdir()
    for name in (
        "caxton.log.2024-03-31",  # 32 days before 2024-05-02: deleted at start
        "caxton.log.2024-04-01-07",  # 31 days: deleted at start
        "caxton.log.2024-04-02",  # 30 days: kept at start, deleted on the next rotation
        "caxton.log.2024-04-03.1",  # kept
        "caxton.log.bak",  # not a rotated file: never touched
        "other.log.2020-01-01",  # not ours
    ):
        (log_dir / name).write_text("old\n")
    clock = ManualClock(wall=datetime(2024, 5, 2, 10, 0))

    handler = open_handler(handlers, log_dir / "caxton.log", clock, retention_days=30)

    assert names(log_dir) == [
        "caxton.log",
        "caxton.log.2024-04-02",
        "caxton.log.2024-04-03.1",
        "caxton.log.bak",
        "other.log.2020-01-01",
    ]
    write(handler, "x")
    clock.advance(days=1)
    write(handler, "y")
    assert names(log_dir) == [
        "caxton.log",
        "caxton.log.2024-04-03.1",
        "caxton.log.2024-05-02",
        "caxton.log.bak",
        "other.log.2020-01-01",
    ]


def test_zero_retention_keeps_everything(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    log_dir.mkdir()
    (log_dir / "caxton.log.2000-01-01").write_text("ancient\n")

    open_handler(
        handlers, log_dir / "caxton.log", ManualClock(wall=datetime(2024, 5, 2)), retention_days=0
    )

    assert "caxton.log.2000-01-01" in names(log_dir)


def test_leftover_file_from_an_earlier_day_is_rotated_at_start(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    log_dir.mkdir()
    active = log_dir / "caxton.log"
    active.write_text("written yesterday\n")
    yesterday = datetime(2024, 5, 1, 18, 0).timestamp()
    os.utime(active, (yesterday, yesterday))

    handler = open_handler(handlers, active, ManualClock(wall=datetime(2024, 5, 2, 9, 0)))
    write(handler, "today")

    assert (log_dir / "caxton.log.2024-05-01").read_text() == "written yesterday\n"
    assert active.read_text() == "today\n"


def test_taken_rotated_name_gets_a_serial(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    log_dir.mkdir()
    (log_dir / "caxton.log.2024-05-01").write_text("from an earlier run\n")
    clock = ManualClock(wall=datetime(2024, 5, 1, 23, 0))
    handler = open_handler(handlers, log_dir / "caxton.log", clock)

    write(handler, "this run")
    clock.advance(hours=2)
    write(handler, "next day")

    assert (log_dir / "caxton.log.2024-05-01").read_text() == "from an earlier run\n"
    assert (log_dir / "caxton.log.2024-05-01.1").read_text() == "this run\n"


def test_aware_clock_is_read_as_local_time(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    local = datetime(2024, 5, 1, 23, 30).astimezone()  # aware, in the local zone
    clock = ManualClock(wall=local)
    handler = open_handler(handlers, log_dir / "caxton.log", clock)

    write(handler, "a")
    clock.advance(hours=1)
    write(handler, "b")

    assert "caxton.log.2024-05-01" in names(log_dir)


def test_vanished_log_directory_is_recreated(
    handlers: list[RotatingLogFileHandler], log_dir: Path
) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 23, 0))
    handler = open_handler(handlers, log_dir / "caxton.log", clock)
    write(handler, "a")
    shutil.rmtree(log_dir)
    clock.advance(hours=2)

    write(handler, "b")

    assert (log_dir / "caxton.log").read_text() == "b\n"


def test_unwritable_log_location_never_raises(
    handlers: list[RotatingLogFileHandler],
    log_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 23, 0))
    handler = open_handler(handlers, log_dir / "caxton.log", clock)
    write(handler, "a")
    shutil.rmtree(log_dir)
    log_dir.write_text("a file where the directory was\n")
    clock.advance(hours=2)

    write(handler, "b")  # cannot rotate, cannot open: reported, not raised
    write(handler, "c")

    assert "FileExistsError" in capsys.readouterr().err


def test_configure_logging_rotates_by_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock(wall=datetime(2024, 5, 1, 23, 59))
    path = tmp_path / "var" / "caxton.log"
    setup = configure_logging(
        ObservabilityConfig(log_file=path, log_format="json", log_rotation="daily"), clock=clock
    )
    try:
        logging.getLogger("caxton.x").info("before")
        clock.advance(minutes=2)
        logging.getLogger("caxton.x").info("after")
    finally:
        setup.close()

    rotated = path.with_name("caxton.log.2024-05-01")
    assert json.loads(rotated.read_text())["message"] == "before"
    assert json.loads(path.read_text())["message"] == "after"
