"""The node name: configured, or made once and kept in the data directory."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from caxton.cluster.identity import NODE_ID_FILE, node_name
from caxton.config.schema import NODE_NAME
from caxton.errors import ConfigError


def test_a_configured_name_wins_and_writes_nothing(tmp_path: Path) -> None:
    assert node_name("caxton-node-1", tmp_path) == "caxton-node-1"
    assert not (tmp_path / NODE_ID_FILE).exists()


def test_a_generated_name_is_kept_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"  # made if missing
    first = node_name(None, data)
    assert NODE_NAME.fullmatch(first)
    host = socket.gethostname().split(".")[0]
    assert first.startswith(host[:10])
    assert (data / NODE_ID_FILE).read_text(encoding="utf-8").strip() == first
    assert node_name(None, data) == first


def test_two_data_directories_give_two_names(tmp_path: Path) -> None:
    assert node_name(None, tmp_path / "a") != node_name(None, tmp_path / "b")


def test_a_host_name_with_odd_characters_still_makes_a_valid_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "my host_π.example.com")
    name = node_name(None, tmp_path)
    assert NODE_NAME.fullmatch(name)
    assert name.startswith("my-host-")


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / NODE_ID_FILE).write_text("not a name!\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="node-id: not a valid node name"):
        node_name(None, tmp_path)


def test_an_unwritable_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="set \\[coordination\\] node_name"):
        node_name(None, blocker / "data")
