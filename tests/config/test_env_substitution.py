"""``${VAR}`` substitution as operators use it in production.toml, and env booleans."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caxton.config._env import Substituted, UnsetVariable, parse_bool, substitute

ENV = {"JWT_SECRET": "abc", "EMPTY": "", "DIR": "/var/lib/caxton"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${JWT_SECRET}", "abc"),
        ("${DIR}/local.db", "/var/lib/caxton/local.db"),
        ("${MISSING:-30s}", "30s"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${DIR:-/tmp}", "/var/lib/caxton"),
        ("${MISSING:-}", ""),
        ("a${JWT_SECRET}b${JWT_SECRET}c", "aabcbabcc"),
        ("$${JWT_SECRET}", "${JWT_SECRET}"),
        ("price $$5", "price $5"),
        ("lone $ sign", "lone $ sign"),
        ("no dollars", "no dollars"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV) == expected


def test_expanded_text_is_marked_and_escapes_are_not() -> None:
    assert isinstance(substitute("${DIR}", ENV), Substituted)
    assert not isinstance(substitute("$${DIR}", ENV), Substituted)
    assert not isinstance(substitute("plain", ENV), Substituted)


def test_unset_variable_names_it() -> None:
    with pytest.raises(UnsetVariable) as info:
        substitute("prefix-${NOT_THERE}", ENV)
    assert info.value.name == "NOT_THERE"


def test_empty_variable_without_default_is_kept_empty() -> None:
    assert substitute("${EMPTY}", ENV) == ""


@pytest.mark.parametrize("text", ["${", "${}", "${1ABC}", "${A B}", "${UNCLOSED"])
def test_malformed_reference_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match=r'a "\$\{" must be followed by a variable name'):
        substitute(text, ENV)


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert substitute(text, ENV) == text


@given(st.text(alphabet=st.characters(blacklist_characters="{}$"), min_size=1))
def test_values_are_never_substituted_twice(value: str) -> None:
    assert substitute("${V}", {"V": "${" + value + "}"}) == "${" + value + "}"


_BOOLEANS = [("true", True), ("1", True), ("YES", True), (" on ", True)]
_BOOLEANS += [("False", False), ("0", False), ("no", False), ("off", False)]


@pytest.mark.parametrize(("text", "value"), _BOOLEANS)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "maybe", "2", "enabled"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected true/false, 1/0, yes/no or on/off"):
        parse_bool(text)
