"""Reading a module upload in the three forms the agents API accepts.

``POST /api/v1/agents`` and ``PUT /api/v1/agents/{name}`` take the module as

* JSON: ``{"name", "wasm": base64, "env"?, "limits"?: {"memory", "fuel"}, "grants"?:
  {"data_dir"}, "node"?}``;
* ``multipart/form-data``: a ``wasm`` (or ``module``) file part plus ``name``, ``env`` (a JSON
  object, or ``K=V`` parts, repeatable), ``memory``, ``fuel``, ``grant_dir``, ``node``;
* a raw ``application/wasm`` (or ``application/octet-stream``) body with the same settings as
  query parameters (``?name=&memory=&fuel=&grant_dir&env=K=V&node=``).

``node`` (a deploy's target: a node name, or ``auto``) matters only in a cluster.

Every form ends as one `Upload`. Mistakes are `InvalidRequest` naming the field; a module above
``runtime.max_module_size`` is `ModuleTooLarge` (413) before it is read to the end.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from caxton.api.errors import ApiError, read_json
from caxton.api.keys import NODE
from caxton.config import format_size, parse_size
from caxton.errors import InvalidRequest, ModuleTooLarge

__all__ = [
    "DEPLOY",
    "UPGRADE",
    "Upload",
    "UploadForm",
    "ascii_digits",
    "query_int",
    "read_upload",
]

#: Largest text part of a multipart upload (name, env, memory, ...), and most parts.
MAX_FIELD = 64 * 1024
MAX_PARTS = 256
#: The largest whole number a setting may be (SQLite's INTEGER).
_MAX_INT = 2**63 - 1
_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Settings of the multipart and raw forms (besides the module).
_SETTINGS = frozenset({"name", "env", "memory", "fuel", "grant_dir", "node"})
_UPGRADE_HINT = "an upgrade replaces the module only; env, limits and grants stay as deployed"


@dataclass(frozen=True, slots=True)
class UploadForm:
    """Which settings an upload may carry (a deploy: all of them; an upgrade: the module)."""

    settings: bool
    hint: str = ""


DEPLOY = UploadForm(settings=True)
UPGRADE = UploadForm(settings=False, hint=_UPGRADE_HINT)


@dataclass(slots=True)
class Upload:
    """A module and the deploy settings that came with it."""

    wasm: bytes = b""
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    memory: int | None = None
    fuel: int | None = None
    grant_dir: bool = False
    #: The node to deploy on (a name, or "auto"); None: the node that received the request.
    node: str | None = None


def _invalid(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{name}: {message}", details={"field": name})


def _reject_unknown(
    given: Iterable[str], allowed: Iterable[str], form: UploadForm, kind: str = "field"
) -> None:
    unknown = sorted(set(given) - set(allowed))
    if not unknown:
        return
    names = ", ".join(repr(n) for n in unknown)
    if form.hint:
        hint = f" ({form.hint})"
    elif allowed:
        hint = f"; expected {', '.join(sorted(allowed))}"
    else:
        hint = f"; this form takes no {kind}s"
    raise InvalidRequest(f"unknown {kind}(s) {names}{hint}", details={"fields": unknown})


def _too_large(size: int, limit: int) -> ModuleTooLarge:
    return ModuleTooLarge(
        f"the module is larger than runtime.max_module_size ({format_size(limit)})",
        details={"max_bytes": limit, "bytes": size},
    )


def _size(name: str, value: Any) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise _invalid(name, str(exc)) from None
    if size <= 0:
        raise _invalid(name, "must be more than 0 bytes")
    return size


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str) and ascii_digits(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_INT:
        raise _invalid(
            name, f"expected a positive whole number up to {_MAX_INT}, got {json.dumps(value)}"
        )
    return value


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _invalid(name, f"expected true or false, got {json.dumps(value)}")


def _env_pair(name: str, text: str, env: dict[str, str]) -> None:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise _invalid(name, f"expected KEY=VALUE, got {text!r}")
    _env_set(name, key, value, env)


def _env_set(name: str, key: str, value: Any, env: dict[str, str]) -> None:
    if not key or "=" in key or "\0" in key:
        raise _invalid(name, f"{key!r} is not a valid environment variable name")
    if not isinstance(value, str) or "\0" in value:
        raise _invalid(f"{name}.{key}", f"expected a string, got {json.dumps(value)}")
    env[key] = value


def _env_object(name: str, value: Any, env: dict[str, str]) -> None:
    if not isinstance(value, Mapping):
        raise _invalid(name, f"expected an object of strings, got {json.dumps(value)}")
    for key, item in value.items():
        _env_set(name, key, item, env)


# -- JSON ------------------------------------------------------------------------------------


def _from_json(body: Any, form: UploadForm, limit: int) -> Upload:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    allowed = {"name", "wasm", "env", "limits", "grants", "node"} if form.settings else {"wasm"}
    _reject_unknown(body, allowed, form)
    up = Upload()
    text = body.get("wasm")
    if text is None:
        raise _invalid("wasm", "required (the module, base64-encoded)")
    if not isinstance(text, str):
        raise _invalid("wasm", "expected a base64 string")
    if len(text) * 3 // 4 > limit + 3:
        raise _too_large(len(text) * 3 // 4, limit)
    try:
        up.wasm = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("wasm", "not valid base64") from None
    if "name" in body:
        if not isinstance(body["name"], str):
            raise _invalid("name", "expected a string")
        up.name = body["name"]
    if body.get("node") is not None:
        if not isinstance(body["node"], str):
            raise _invalid("node", 'expected a node name or "auto"')
        up.node = body["node"]
    if "env" in body:
        _env_object("env", body["env"], up.env)
    limits = body.get("limits", {})
    if not isinstance(limits, dict):
        raise _invalid("limits", 'expected an object such as {"memory": "64MB", "fuel": 1000}')
    _reject_unknown((f"limits.{k}" for k in limits), ("limits.memory", "limits.fuel"), form)
    if limits.get("memory") is not None:
        up.memory = _size("limits.memory", limits["memory"])
    if limits.get("fuel") is not None:
        up.fuel = _positive_int("limits.fuel", limits["fuel"])
    grants = body.get("grants", {})
    if not isinstance(grants, dict):
        raise _invalid("grants", 'expected an object such as {"data_dir": true}')
    _reject_unknown((f"grants.{k}" for k in grants), ("grants.data_dir",), form)
    up.grant_dir = _flag("grants.data_dir", grants.get("data_dir", False))
    return up


# -- multipart -------------------------------------------------------------------------------


async def _read_part(part: BodyPartReader, limit: int, *, module: bool) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            if module:
                raise _too_large(len(data), limit)
            raise _invalid(part.name or "?", f"longer than {format_size(limit)}")
    return bytes(data)


def _setting(up: Upload, name: str, text: str) -> None:
    if name == "name":
        up.name = text
    elif name == "env":
        if text.lstrip().startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise _invalid("env", f"not a JSON object: {exc}") from None
            _env_object("env", value, up.env)
        else:
            _env_pair("env", text, up.env)
    elif name == "memory":
        up.memory = _size("memory", text)
    elif name == "fuel":
        up.fuel = _positive_int("fuel", text)
    elif name == "grant_dir":
        up.grant_dir = _flag("grant_dir", text)
    elif name == "node":
        up.node = text


async def _from_multipart(request: web.Request, form: UploadForm, limit: int) -> Upload:
    allowed = {"wasm", "module"} | (_SETTINGS if form.settings else set())
    up, module, parts = Upload(), None, 0
    try:
        reader = await request.multipart()
        async for part in reader:
            parts += 1
            if parts > MAX_PARTS:
                raise InvalidRequest(f"more than {MAX_PARTS} parts in the multipart body")
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not supported")
            name = part.name or ""
            _reject_unknown([name], allowed, form)
            if name in ("wasm", "module"):
                if module is not None:
                    raise _invalid(name, "more than one module part")
                module = await _read_part(part, limit, module=True)
            else:
                text = await _read_part(part, MAX_FIELD, module=False)
                _setting(up, name, text.decode("utf-8", "replace"))
    except (ValueError, AssertionError, RuntimeError, TypeError, HttpProcessingError) as exc:
        # aiohttp's multipart reader raises all of these for a malformed body (a bad boundary,
        # part header, part name or transfer encoding): each is the client's mistake.
        raise InvalidRequest(f"malformed multipart body: {_reason(exc)}") from None
    if module is None:
        raise _invalid("wasm", "required (a file part named 'wasm' or 'module')")
    up.wasm = module
    return up


# -- raw body --------------------------------------------------------------------------------


async def _from_raw(request: web.Request, form: UploadForm, limit: int) -> Upload:
    query = request.query
    _reject_unknown(query.keys(), _SETTINGS if form.settings else (), form, "query parameter")
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(length, limit)
    up = Upload(wasm=await request.read())
    if len(up.wasm) > limit:
        raise _too_large(len(up.wasm), limit)
    for name in ("name", "memory", "fuel", "grant_dir", "node"):
        if name in query:
            _setting(up, name, query[name])
    for pair in query.getall("env", []):
        _env_pair("env", pair, up.env)
    return up


async def read_upload(request: web.Request, form: UploadForm) -> Upload:
    """The module and settings of a deploy or upgrade request, in whichever form it came."""
    limit: int = request.app[NODE].config.runtime.max_module_size
    ctype = request.content_type
    if ctype == "application/json":
        if request.query:
            _reject_unknown(request.query.keys(), (), form, "query parameter")
        return _from_json(await read_json(request), form, limit)
    if ctype == "multipart/form-data":
        return await _from_multipart(request, form, limit)
    if ctype in ("application/wasm", "application/octet-stream"):
        return await _from_raw(request, form, limit)
    raise ApiError(
        415,
        "INVALID_REQUEST",
        f"unsupported Content-Type {ctype!r}: send application/json (base64 'wasm'), "
        "multipart/form-data or application/wasm",
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, HttpProcessingError):
        return exc.message.strip() or "bad part headers"
    return str(exc) or type(exc).__name__


_ASCII_INT = re.compile(r"-?[0-9]{1,19}")


def ascii_digits(text: str) -> bool:
    """True if ``text`` is 1 to 19 ASCII digits (what `int` may be given: ``str.isdigit`` is
    also true for "¹" and "٣", which `int` refuses or reads as 3)."""
    return _ASCII_INT.fullmatch(text) is not None and text[0] != "-"


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as a whole number in ``[low, high]``, or `InvalidRequest`.

    Only ASCII digits (with an optional leading ``-``) are numbers: ``int`` would also take
    "٣", " 3" and "1_0".
    """
    text = request.query.get(name)
    if text is None:
        return default
    if _ASCII_INT.fullmatch(text) is None:
        raise _invalid(name, f"expected a whole number, got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low} and {high}, got {value}")
    return value
