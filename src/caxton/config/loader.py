"""`load_config`: read `production.toml`, substitute ``${VAR}``, validate, apply overrides.

The order is fixed, so that an operator can predict the outcome:

1. Which file: the `path` argument, else ``CAXTON_CONFIG_PATH``, else the embedded default.
2. TOML is parsed with `tomllib`; a syntax error names the file, line and column.
3. ``${VAR}`` / ``${VAR:-default}`` are expanded in every string (see `caxton.config._env`).
4. Every key is checked against the schema and parsed to its typed value; an unknown section
   or key is an error with a "did you mean" suggestion. Missing keys keep their defaults.
5. Checks that span keys run (TLS files exist, auth has a secret, listeners do not collide).
6. Environment overrides win last: ``CAXTON_LOG_LEVEL``, ``CAXTON_METRICS_ENABLED``,
   ``CAXTON_NATS_SERVER``.

Nothing stops at the first problem: every error found is collected and raised together as one
`ConfigError`, one error per line, with ``details={"errors": [...], "file": ...}``. A secret's
value never appears in any message.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caxton.config._checks import JwtSource, cross_check
from caxton.config._env import UnsetVariable, parse_bool, substitute
from caxton.config._fields import SECTIONS, describe, parse_log_level
from caxton.config.schema import Config
from caxton.errors import ConfigError

__all__ = ["load_config"]

_TOML_POSITION = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_secret: bool = True,
) -> Config:
    """Load, validate and return the effective configuration.

    Args:
        path: the TOML file. None: ``CAXTON_CONFIG_PATH`` from `environ` if set (and not
            empty), else the embedded default (one node on loopback, state under
            ``./caxton-data``).
        environ: variables for ``${VAR}`` substitution and the ``CAXTON_*`` overrides;
            `os.environ` when None.
        require_secret: whether ``auth_enabled = true`` without a usable ``jwt_secret`` is an
            error. True for what signs or checks tokens (serving, ``token create``) and for
            ``config check``; False for commands that never use the secret (``config show``,
            ``backup``), so that a backup job need not hold it. ``security.jwt_secret`` is then
            None when its variable is not set.

    Relative paths in the file (and in the embedded default) are made absolute against the
    current working directory. `Config.source` is the resolved path of the file read, or
    None for the embedded default.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid TOML, or any value is
            wrong; the message has one line per problem, each naming the file and key.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    origin = ""
    if path is None and env.get("CAXTON_CONFIG_PATH"):
        path = env["CAXTON_CONFIG_PATH"]
        origin = " (from CAXTON_CONFIG_PATH)"
    errors: list[str] = []
    file: str | None = None
    if path is None:
        config = _absolute_paths(Config.embedded_default())
    else:
        file = str(path)
        document = _read(Path(path), file, origin)
        config, errors = _build(document, env, file, require_secret=require_secret)
        config = config.replace(source=Path(path).resolve())
    config = _apply_overrides(config, env, errors)
    if errors:
        raise ConfigError("\n".join(errors), details={"errors": errors, "file": file})
    return config


def _fail(file: str, message: str, **details: Any) -> ConfigError:
    line = f"{file}: {message}"
    return ConfigError(line, details={"errors": [line], "file": file, **details})


def _read(path: Path, file: str, origin: str) -> dict[str, Any]:
    """The parsed TOML document, or a ConfigError naming the file (and line for syntax)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(file, f"no such configuration file{origin}") from None
    except IsADirectoryError:
        raise _fail(file, f"is a directory, not a configuration file{origin}") from None
    except OSError as exc:
        raise _fail(file, f"cannot read the configuration file{origin}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.match(message)
        if match is None:
            raise _fail(file, f"invalid TOML: {message}") from None
        what, line, column = match["what"], int(match["line"]), int(match["column"])
        if what.startswith("Cannot declare") and "twice" in what:
            what += "; a table may appear only once, so merge its keys into one [section]"
        raise _fail(
            file, f"line {line}, column {column}: invalid TOML: {what}", line=line, column=column
        ) from None


def _substitute_all(value: Any, environ: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` in a string or in the strings of an array."""
    if isinstance(value, str):
        return substitute(value, environ)
    if isinstance(value, list):
        return [_substitute_all(item, environ) for item in value]
    return value


def _suggest(word: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _build(
    document: dict[str, Any], environ: Mapping[str, str], file: str, *, require_secret: bool
) -> tuple[Config, list[str]]:
    """Parse every section; returns the config (defaults where a key failed) and the errors."""
    errors: list[str] = []
    failed: set[str] = set()
    names = list(SECTIONS)
    for name in document:
        if name not in SECTIONS:
            guess = _suggest(name, names)
            hint = (
                f"did you mean [{guess}]?"
                if guess
                else "the sections are " + ", ".join(f"[{known}]" for known in names)
            )
            errors.append(f"{file}: unknown section [{name}]; {hint}")
    jwt = JwtSource()
    sections: dict[str, Any] = {}
    for name, spec in SECTIONS.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            errors.append(f"{file}: {name}: expected a table [{name}], got {describe(table)}")
            table = {}
        values: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in spec.keys:
                guess = _suggest(key, list(spec.keys))
                hint = f'; did you mean "{guess}"?' if guess else ""
                errors.append(f'{file}: [{name}] unknown key "{key}"{hint}')
                continue
            qualified = f"{name}.{key}"
            is_secret = qualified == "security.jwt_secret"
            try:
                value = _substitute_all(raw, environ)
                values[key] = spec.keys[key](value)
            except UnsetVariable as exc:
                if is_secret:
                    jwt = JwtSource(given=True, unset_variable=exc.name)
                    continue
                errors.append(
                    f"{file}: {qualified}: ${{{exc.name}}} is used but {exc.name} is not set "
                    f"in the environment (write ${{{exc.name}:-default}} to give a default)"
                )
                failed.add(qualified)
            except ValueError as exc:
                errors.append(f"{file}: {qualified}: {exc}")
                failed.add(qualified)
            else:
                if is_secret:
                    jwt = JwtSource(given=True)
        sections[name] = spec.cls(**values)
    config = _absolute_paths(Config(**sections))
    errors.extend(
        f"{file}: {line}"
        for line in cross_check(config, failed=failed, jwt=jwt, require_secret=require_secret)
    )
    return config, errors


def _absolute_paths(config: Config) -> Config:
    """Relative paths (including defaults such as ``caxton-data/local.db``) made absolute."""
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        section = getattr(config, name)
        changes = {
            field.name: value.absolute()
            for field in dataclasses.fields(section)
            if isinstance(value := getattr(section, field.name), Path) and not value.is_absolute()
        }
        sections[name] = dataclasses.replace(section, **changes) if changes else section
    return config.replace(**sections)


def _apply_overrides(config: Config, environ: Mapping[str, str], errors: list[str]) -> Config:
    """``CAXTON_LOG_LEVEL``, ``CAXTON_METRICS_ENABLED``, ``CAXTON_NATS_SERVER`` (empty: unset)."""
    changes: dict[str, Any] = {}
    if level := environ.get("CAXTON_LOG_LEVEL"):
        try:
            changes["log_level"] = parse_log_level(level)
        except ValueError as exc:
            errors.append(f"CAXTON_LOG_LEVEL: {exc}")
    if metrics := environ.get("CAXTON_METRICS_ENABLED"):
        try:
            changes["enable_metrics"] = parse_bool(metrics)
        except ValueError as exc:
            errors.append(f"CAXTON_METRICS_ENABLED: {exc}")
    if server := environ.get("CAXTON_NATS_SERVER"):
        coordination = dataclasses.replace(config.coordination, nats_server=Path(server).absolute())
        config = config.replace(coordination=coordination)
    if not changes:
        return config
    return config.replace(observability=dataclasses.replace(config.observability, **changes))
