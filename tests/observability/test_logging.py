"""configure_logging: formats, levels, idempotence, secret masking and failure handling."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from caxton.config import ObservabilityConfig, Secret
from caxton.errors import ConfigError
from caxton.observability import LoggingSetup, SecretMasker, configure_logging
from caxton.observability._formatters import JsonFormatter, TextFormatter
from caxton.wire.timestamps import rfc3339

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

log = logging.getLogger("caxton.test.component")


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def setups() -> Iterator[list[LoggingSetup]]:
    """Every setup a test makes is closed afterwards, so no handler leaks into other tests."""
    made: list[LoggingSetup] = []
    yield made
    for setup in reversed(made):
        setup.close()


def configure(setups: list[LoggingSetup], stream: io.StringIO, **options: Any) -> LoggingSetup:
    setup = configure_logging(ObservabilityConfig(**options), stream=stream)
    setups.append(setup)
    return setup


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_time_level_logger_message_and_context(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    configure(setups, stream, log_format="json")

    log.info("agent %s started", "echo", extra={"agent": "echo", "version": 3})

    [line] = json_lines(stream)
    assert RFC3339_MS.match(str(line["time"]))
    assert line["level"] == "info"
    assert line["logger"] == "caxton.test.component"
    assert line["message"] == "agent echo started"
    assert line["agent"] == "echo"
    assert line["version"] == 3
    assert "exception" not in line


def test_json_time_is_utc_with_milliseconds() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)

    assert rfc3339(moment.timestamp()) == "2024-05-01T12:30:00.123Z"


def test_json_includes_formatted_exception(setups: list[LoggingSetup], stream: io.StringIO) -> None:
    configure(setups, stream, log_format="json")

    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handling failed", extra={"message_id": "m-1"})

    [line] = json_lines(stream)
    assert line["level"] == "error"
    assert "Traceback" in str(line["exception"])
    assert "ValueError: boom" in str(line["exception"])
    assert line["message_id"] == "m-1"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_json_never_raises_on_odd_values(setups: list[LoggingSetup], stream: io.StringIO) -> None:
    configure(setups, stream, log_format="json")
    cyclic: list[object] = []
    cyclic.append(cyclic)

    log.warning(
        "odd values",
        extra={
            "path": Path("/tmp/x"),
            "when": datetime(2024, 1, 1, tzinfo=UTC),
            "nan": float("nan"),
            "nested": {1: {"set": {1}}},
            "cyclic": cyclic,
            "bad": Unprintable(),
        },
    )

    [first] = json_lines(stream)
    assert first["path"] == "/tmp/x"
    assert first["when"] == "2024-01-01 00:00:00+00:00"
    assert first["nan"] == "nan"
    assert first["nested"] == {"1": {"set": [1]}}
    assert first["bad"] == "<unprintable Unprintable>"


def test_json_keeps_a_record_whose_arguments_do_not_fit() -> None:
    # Tested on the formatter: pytest's own capture handler re-raises such errors.
    record = logging.LogRecord("caxton.x", logging.INFO, __file__, 1, "%d agents", ("many",), None)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "%d agents"
    assert "TypeError" in str(line["format_error"])


def test_context_field_cannot_hide_standard_keys() -> None:
    record = logging.makeLogRecord(
        {"name": "caxton.x", "msg": "hello", "levelno": 20, "levelname": "INFO", "level": "fake"}
    )

    line = json.loads(JsonFormatter().format(record))

    assert line["level"] == "info"
    assert line["ctx_level"] == "fake"


def test_text_format_is_one_readable_line_with_key_values(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    configure(setups, stream, log_format="text")

    log.warning("mailbox full", extra={"agent": "echo", "reason": "queue full", "depth": 1024})

    [line] = stream.getvalue().splitlines()
    timestamp, rest = line.split(" ", 1)
    assert RFC3339_MS.match(timestamp)
    assert (
        rest
        == 'WARNING caxton.test.component: mailbox full agent=echo reason="queue full" depth=1024'
    )


def test_text_format_puts_traceback_after_the_line() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        record = logging.LogRecord(
            "caxton.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )

    first, *rest = TextFormatter().format(record).splitlines()

    assert first.endswith("ERROR   caxton.x: failed")
    assert rest[0].startswith("Traceback")


@pytest.mark.parametrize(
    ("log_level", "shown", "hidden"),
    [
        pytest.param("debug", "debug", None, id="debug"),
        pytest.param("info", "info", "debug", id="info"),
        pytest.param("warn", "warning", "info", id="warn-spelling"),
        pytest.param("WARNING", "warning", "info", id="upper-case"),
        pytest.param("error", "error", "warning", id="error"),
    ],
)
def test_log_level_applies_to_caxton_loggers(
    setups: list[LoggingSetup],
    stream: io.StringIO,
    log_level: str,
    shown: str,
    hidden: str | None,
) -> None:
    configure(setups, stream, log_format="json", log_level=log_level)

    getattr(log, shown)("shown")
    if hidden is not None:
        getattr(log, hidden)("hidden")

    assert [line["message"] for line in json_lines(stream)] == ["shown"]


def test_other_libraries_log_from_warning_up(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    configure(setups, stream, log_format="json", log_level="debug")
    other = logging.getLogger("someone.else")

    other.info("chatty")
    other.warning("important")

    assert [line["message"] for line in json_lines(stream)] == ["important"]


def test_unknown_level_is_a_config_error(stream: io.StringIO) -> None:
    with pytest.raises(ConfigError, match=r"log_level.*verbose"):
        configure_logging(ObservabilityConfig(log_level="verbose"), stream=stream)


def test_configuring_again_replaces_the_handler(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    second_stream = io.StringIO()
    first = configure(setups, stream, log_format="json")
    configure(setups, second_stream, log_format="text")

    log.info("once")

    assert stream.getvalue() == ""
    assert "caxton.test.component: once" in second_stream.getvalue()
    assert first.handler not in logging.getLogger().handlers


def test_close_removes_handler_and_restores_levels(stream: io.StringIO) -> None:
    root = logging.getLogger()
    caxton = logging.getLogger("caxton")
    before = (root.level, caxton.level, list(root.handlers))

    setup = configure_logging(ObservabilityConfig(log_level="error"), stream=stream)
    setup.close()
    setup.close()  # idempotent
    log.error("after close")

    assert (root.level, caxton.level, list(root.handlers)) == before
    assert stream.getvalue() == ""


def test_registered_secrets_are_masked_everywhere(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    setup = configure(setups, stream, log_format="json")
    setup.register_secret("s3cr3t-token")
    setup.register_secret(Secret("jwt-signing-key"))

    try:
        raise RuntimeError("bad key jwt-signing-key")
    except RuntimeError:
        log.exception(
            "token %s rejected",
            "s3cr3t-token",
            extra={"header": "Bearer s3cr3t-token", "nested": {"key": ["jwt-signing-key"]}},
        )

    text = stream.getvalue()
    assert "s3cr3t-token" not in text
    assert "jwt-signing-key" not in text
    [line] = json_lines(stream)
    assert line["message"] == "token ******** rejected"
    assert line["header"] == "Bearer ********"
    assert line["nested"] == {"key": ["********"]}
    assert "RuntimeError: bad key ********" in str(line["exception"])


def test_masker_survives_reconfiguration_and_ignores_trivial_values(
    setups: list[LoggingSetup], stream: io.StringIO
) -> None:
    first = configure(setups, stream, log_format="text")
    first.register_secret("hunter2-pass")
    first.register_secret("")
    first.register_secret(None)
    first.register_secret("ab")
    configure(setups, stream, log_format="text")

    log.info("password is hunter2-pass, ab")

    assert "password is ********, ab" in stream.getvalue()
    assert first.masker.secret_count == 1


def test_masker_masks_longest_secret_first() -> None:
    masker = SecretMasker()
    masker.register_secret("abcd")
    masker.register_secret("abcdefgh")

    assert masker.mask("x abcdefgh y abcd") == "x ******** y ********"


class BrokenStream(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failing_stream_never_raises_into_the_caller(
    setups: list[LoggingSetup], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(setups, BrokenStream(), log_format="json")

    log.error("this cannot be written")  # must not raise

    assert "No space left on device" in capsys.readouterr().err


def test_log_file_parent_directory_is_created(
    setups: list[LoggingSetup], stream: io.StringIO, tmp_path: Path
) -> None:
    path = tmp_path / "logs" / "nested" / "caxton.log"
    configure(setups, stream, log_format="json", log_file=path, log_rotation="never")

    log.info("to the file", extra={"agent": "echo"})

    assert json.loads(path.read_text())["agent"] == "echo"
    assert stream.getvalue() == ""


def test_unwritable_log_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    with pytest.raises(ConfigError, match="log_file"):
        configure_logging(ObservabilityConfig(log_file=blocker / "caxton.log"))
