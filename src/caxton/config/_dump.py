"""The effective configuration rendered back for people: a JSON-ready dict and TOML text.

Values are rendered the way an operator writes them: durations ``"30s"``/``"200ms"``, sizes
``"512MB"``, addresses ``"host:port"``, paths as strings, secrets ``"********"`` unless
``mask_secrets=False``. Unset optional keys are None in the dict and absent from the TOML.
`dump_config(..., mask_secrets=False)` text loads back (`load_config`) to an equal `Config`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from caxton.config import _fields
from caxton.config._units import format_duration, format_size
from caxton.config.schema import Address, Config, Secret, mask_url_password

__all__ = ["MASK", "config_to_dict", "dump_config"]

MASK = "********"

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _render(parser: _fields.Parser, value: Any, mask_secrets: bool) -> Any:
    if value is None:
        return None
    if parser is _fields.duration:
        return format_duration(value)
    if parser is _fields.size:
        return format_size(value)
    if isinstance(value, Secret):
        return MASK if mask_secrets else value.reveal()
    if parser is _fields.nats_url and mask_secrets:
        return mask_url_password(value)
    if isinstance(value, Address | Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def config_to_dict(config: Config, *, mask_secrets: bool = True) -> dict[str, Any]:
    """``{section: {key: value}}`` with every key of the schema, ready for `json.dumps`."""
    result: dict[str, Any] = {}
    for name, spec in _fields.SECTIONS.items():
        section = getattr(config, name)
        result[name] = {
            field.name: _render(spec.keys[field.name], getattr(section, field.name), mask_secrets)
            for field in dataclasses.fields(section)
        }
    return result


def _toml_string(text: str) -> str:
    # "$" is doubled because the loader expands ${VAR} in every string it reads back.
    body = "".join(
        _ESCAPES.get(char, f"\\u{ord(char):04x}" if ord(char) < 0x20 or char == "\x7f" else char)
        for char in text.replace("$", "$$")
    )
    return f'"{body}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_config(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML text, one ``[section]`` per schema section.

    With secrets masked the text is for reading (``caxton config show``); a file written from it
    would carry ``"********"`` as the JWT secret.
    """
    source = str(config.source) if config.source is not None else "the embedded default"
    lines = [f"# Effective Caxton configuration (from {' '.join(source.splitlines())})."]
    if mask_secrets:
        lines.append('# Secrets are masked ("********").')
    for name, values in config_to_dict(config, mask_secrets=mask_secrets).items():
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None)
    return "\n".join(lines) + "\n"
