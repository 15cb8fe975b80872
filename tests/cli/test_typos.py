"""A mistyped command gets a suggestion, at the top level as in the groups."""

from __future__ import annotations

from click.testing import CliRunner

from caxton.cli import cli


def test_top_level_typo_suggests_the_command() -> None:
    result = CliRunner().invoke(cli, ["agnet", "list"])
    assert result.exit_code == 2
    assert "No such command 'agnet'. Did you mean 'agent'?" in result.stderr
    config = CliRunner().invoke(cli, ["confg", "check"])
    assert "Did you mean 'config'?" in config.stderr


def test_no_suggestion_when_nothing_is_close() -> None:
    result = CliRunner().invoke(cli, ["xyzzy"])
    assert result.exit_code == 2
    assert "No such command 'xyzzy'." in result.stderr
    assert "Did you mean" not in result.stderr


def test_group_typo_still_suggests() -> None:
    result = CliRunner().invoke(cli, ["agent", "lst"])
    assert result.exit_code == 2
    assert "Did you mean 'list'?" in result.stderr
