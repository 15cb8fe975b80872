"""``${VAR}`` substitution in configuration strings, and booleans read from the environment.

Rules (applied to every string value in the file, including strings inside arrays):

* ``${VAR}`` is replaced by the value of ``VAR``; an unset ``VAR`` is an error
  (`UnsetVariable`), reported by the loader with the key that used it.
* ``${VAR:-default}`` is replaced by ``VAR``'s value, or by ``default`` when ``VAR`` is unset
  or empty (the shell's meaning of ``:-``). The default is taken literally.
* ``$$`` is a literal ``$`` (so ``$${VAR}`` is the literal text ``${VAR}``). Any other ``$`` is
  kept as it is.
* Substituted text is never substituted again.

A string that had at least one ``${...}`` replaced comes back as `Substituted`, a `str`
subclass. The loader uses that to let ``max_agents = "${MAX_AGENTS:-1000}"`` stand for a number
or a boolean: a plain TOML string in those places is still a type error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["Substituted", "UnsetVariable", "parse_bool", "substitute"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(rf"\$\$|\$\{{(?P<name>{_NAME})(?::-(?P<default>[^}}]*))?\}}|\$\{{")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class Substituted(str):
    """A string produced by replacing at least one ``${...}``."""

    __slots__ = ()


class UnsetVariable(LookupError):
    """A ``${VAR}`` without a default names a variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in `text`.

    Returns `text` unchanged (the same object) when it holds no ``$`` token, a `Substituted`
    string when a variable was expanded, and a plain `str` when only ``$$`` escapes were
    present.

    Raises:
        UnsetVariable: a ``${VAR}`` without a default and ``VAR`` is unset.
        ValueError: a ``${`` that does not form ``${NAME}`` or ``${NAME:-default}``.
    """
    if "$" not in text:
        return text
    pieces: list[str] = []
    position = 0
    expanded = False
    for match in _TOKEN.finditer(text):
        pieces.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token == "$$":
            pieces.append("$")
            continue
        name = match.group("name")
        if name is None:
            raise ValueError(
                'a "${" must be followed by a variable name and "}", as in "${JWT_SECRET}" '
                'or "${LOG_DIR:-/var/log}" (write "$${" for a literal "${")'
            )
        expanded = True
        default = match.group("default")
        value = environ.get(name)
        if default is not None and not value:
            pieces.append(default)
        elif value is None:
            raise UnsetVariable(name)
        else:
            pieces.append(value)
    pieces.append(text[position:])
    result = "".join(pieces)
    return Substituted(result) if expanded else result


def parse_bool(text: str) -> bool:
    """Read a boolean as people write it in environment variables.

    Accepts ``true/false``, ``1/0``, ``yes/no``, ``on/off`` in any case, surrounding spaces
    ignored. Raises ValueError otherwise.
    """
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f'expected true/false, 1/0, yes/no or on/off, got "{text}"')
