"""Deciding whether uploaded bytes are an agent Caxton can run (ABI v1, docs/agents.md).

Two steps, both raising `InvalidWasm` (400) with a message written for the agent's author and
machine-readable ``details["reason"]``:

* `check_bytes` looks at the raw bytes before anything is compiled: size (`ModuleTooLarge`),
  the magic number (naming the usual mistakes: a ``.wat`` text file, a native executable, an
  archive, a JSON or HTML body), the version (components are refused), and the section headers,
  so a cut-short upload is reported as such instead of as a compiler error.
* `inspect_module` looks at a compiled `wasmtime.Module`: which kind of agent it is, that the
  ABI exports exist with their exact signatures (the runtime later calls them *unchecked*, so a
  wrong signature must never get past this point), that every import is one Caxton provides, and
  that the initial memory fits the agent memory limit.

Why `check_bytes` also reads the type, import, function and export sections: wasmtime-py aborts
the whole process (a Rust panic, not an exception) when it is asked for the parameter types of a
function that uses ``v128`` or a typed reference. `inspect_module` reads the signatures of imports
and ABI exports, so the bytes are refused first if any imported or exported function uses a value
type other than i32, i64, f32, f64, funcref or externref. Always call `check_bytes` (or
`check_binary`) on the bytes of a module before `inspect_module`; `validate_and_load` in
`caxton.runtime.admission.cache` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import wasmtime

from caxton.errors import InvalidWasm, ModuleTooLarge
from caxton.runtime.abi import HOST_IMPORTS, HOST_MODULE
from caxton.runtime.admission.wasi import WASI_MODULE, WASI_PREVIEW1, Signature

if TYPE_CHECKING:
    from caxton.runtime.admission.globals import SavedGlobal

__all__ = [
    "CAXTON_IMPORTS",
    "CAXTON_MODULE",
    "AgentKind",
    "ModuleInfo",
    "check_binary",
    "check_bytes",
    "inspect_module",
]

AgentKind = Literal["reactor", "command"]

#: The import module name of the Caxton host ABI.
CAXTON_MODULE = HOST_MODULE

_I = "i32"

#: ABI v1 host functions (module ``caxton``) and their signatures: `abi.HOST_IMPORTS`.
CAXTON_IMPORTS: Mapping[str, Signature] = HOST_IMPORTS

# Function exports of each kind: (name, signature, required).
_ExportSpec = tuple[tuple[str, Signature, bool], ...]
_REACTOR_FUNCS: _ExportSpec = (
    ("caxton_alloc", Signature((_I,), (_I,)), True),
    ("caxton_handle", Signature((_I, _I), (_I,)), True),
    ("_initialize", Signature((), ()), False),
    ("caxton_init", Signature((), (_I,)), False),
)
_COMMAND_FUNCS: _ExportSpec = (("_start", Signature((), ()), True),)

_MAGIC = b"\0asm"
_VERSION_1 = b"\x01\x00\x00\x00"
_KIB, _MIB = 1024, 1024 * 1024

# Value types that wasmtime-py can report for a function signature without aborting the process.
_LINKABLE_TYPES = frozenset({"i32", "i64", "f32", "f64", "funcref", "externref"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleInfo:
    """What `inspect_module` learned about a valid agent module."""

    #: ``"reactor"`` (exports ``caxton_handle``) or ``"command"`` (exports ``_start`` only).
    kind: AgentKind
    #: Names imported from module ``caxton`` (e.g. ``{"send", "log"}``).
    caxton_imports: frozenset[str]
    #: Names imported from ``wasi_snapshot_preview1``.
    wasi_imports: frozenset[str]
    #: Names of every export.
    exports: frozenset[str]
    #: Initial size of the exported ``memory`` in bytes.
    initial_memory_bytes: int
    #: Declared maximum of the exported ``memory`` in bytes, or None when it has none.
    maximum_memory_bytes: int | None
    #: The module exports ``_initialize`` (a WASI reactor); call it once after instantiation.
    has_initialize: bool
    #: The module exports ``caxton_init``; call it once after ``_initialize``.
    has_caxton_init: bool
    #: The mutable globals a snapshot keeps (`caxton.runtime.admission.globals`).
    saved_globals: tuple[SavedGlobal, ...] = ()
    #: Why a snapshot cannot keep this agent's state (it is never hibernated), or None.
    unsaved_state: str | None = None


# --------------------------------------------------------------------------------------------
# check_bytes: the raw bytes


def check_bytes(wasm: bytes, *, max_size: int) -> None:
    """Refuse bytes that are too large or are not a complete core WebAssembly module.

    Raises:
        ModuleTooLarge: ``len(wasm) > max_size`` (details ``size``, ``max_size``).
        InvalidWasm: empty, not WebAssembly (``reason="not_wasm"``, ``detected`` names what it
            looks like), a component or another version (``"component"``,
            ``"unsupported_version"``), cut short (``"truncated"``), malformed section headers
            (``"malformed"``), or an imported/exported function using value types Caxton cannot
            link (``"unsupported_value_type"``).
    """
    if not wasm:
        raise InvalidWasm("the module is empty (0 bytes)", details={"reason": "empty"})
    if len(wasm) > max_size:
        raise ModuleTooLarge(
            f"the module is {_size(len(wasm))}, above the limit of {_size(max_size)}",
            details={"size": len(wasm), "max_size": max_size},
        )
    check_binary(wasm)


def check_binary(wasm: bytes) -> None:
    """`check_bytes` without the size limit: header, version, sections, linkable signatures.

    Raises `InvalidWasm` as `check_bytes` does. Passing this makes `inspect_module` safe to call
    on the compiled module.
    """
    if not wasm:
        raise InvalidWasm("the module is empty (0 bytes)", details={"reason": "empty"})
    if not wasm.startswith(_MAGIC[: len(wasm)]):
        raise _not_wasm(wasm)
    if len(wasm) < 8:
        raise InvalidWasm(
            f"truncated: the module is {len(wasm)} bytes, shorter than the 8-byte header",
            details={"reason": "truncated", "size": len(wasm)},
        )
    _check_version(wasm[4:8])
    sections = _sections(wasm)
    _check_linkable(wasm, sections)


def _not_wasm(wasm: bytes) -> InvalidWasm:
    """Name what ``wasm`` looks like when it does not start with the WebAssembly magic."""
    prefix = wasm[:8].hex(" ")
    detected, hint = _sniff(wasm)
    message = f"not a WebAssembly module: it starts with {prefix} (expected 00 61 73 6d)"
    if hint:
        message += f"; {hint}"
    return InvalidWasm(
        message, details={"reason": "not_wasm", "detected": detected, "prefix": prefix}
    )


_BINARY_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x7fELF", "elf", "this is an ELF executable or library; build for wasm32-wasi instead"),
    (b"MZ", "pe", "this is a Windows executable (PE); build for wasm32-wasi instead"),
    (b"\xcf\xfa\xed\xfe", "macho", "this is a Mach-O executable; build for wasm32-wasi instead"),
    (b"\xce\xfa\xed\xfe", "macho", "this is a Mach-O executable; build for wasm32-wasi instead"),
    (b"\xca\xfe\xba\xbe", "macho", "this is a Mach-O universal binary or a Java class file"),
    (b"\x1f\x8b", "gzip", "this is gzip-compressed data; decompress it and send the .wasm"),
    (b"\x28\xb5\x2f\xfd", "zstd", "this is zstd-compressed data; decompress it and send the .wasm"),
    (b"PK\x03\x04", "zip", "this is a zip archive; extract the .wasm file and send that"),
    (b"#!", "script", "this is a script; send the compiled .wasm module"),
)


def _sniff(wasm: bytes) -> tuple[str, str]:
    """Guess what a non-wasm upload is: ``(kind, hint for the user)``; ``("unknown", "")``."""
    for magic, kind, hint in _BINARY_SIGNATURES:
        if wasm.startswith(magic):
            return kind, hint
    text = wasm[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"(module", b"(component", b";;", b"(;")):
        return "wat", (
            "this looks like WebAssembly text (.wat); compile it with wat2wasm or send the binary"
        )
    if text.startswith(b"agfzbq"):  # base64 of "\0asm"
        return "base64", "this looks like base64-encoded WebAssembly; decode it and send the bytes"
    if text.startswith((b"{", b"[")):
        return "json", (
            "this looks like a JSON document; send the raw .wasm bytes as the module, not JSON"
        )
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "html", (
            "this looks like an HTML or XML page (an error page from a download?); "
            "send the .wasm file itself"
        )
    return "unknown", ""


def _check_version(version: bytes) -> None:
    """Accept only core module version 1; name components (layer 1) explicitly."""
    if version == _VERSION_1:
        return
    number = int.from_bytes(version[:2], "little")
    layer = int.from_bytes(version[2:], "little")
    if layer == 1:
        raise InvalidWasm(
            f"this is a WebAssembly component (version 0x{number:04x}, layer 1); "
            "components are not supported; build a core module (wasm32-wasi / wasm32-wasip1)",
            details={"reason": "component", "version": number, "layer": layer},
        )
    raise InvalidWasm(
        f"unsupported WebAssembly binary version {version.hex(' ')}; "
        "Caxton runs core modules of version 1 (01 00 00 00)",
        details={"reason": "unsupported_version", "version": version.hex()},
    )


_SECTION_NAMES = {
    0: "custom",
    1: "type",
    2: "import",
    3: "function",
    4: "table",
    5: "memory",
    6: "global",
    7: "export",
    8: "start",
    9: "element",
    10: "code",
    11: "data",
    12: "data count",
    13: "tag",
}


@dataclass(frozen=True, slots=True)
class _Section:
    id: int
    start: int  # first byte of the contents
    end: int  # one past the last byte of the contents


class _Malformed(Exception):
    """Internal: a section's contents cannot be parsed (the message says what and where)."""


class _Reader:
    """A cursor over ``data[pos:end]`` reading LEB128 integers, bytes and names."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed(f"unexpected end at byte offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def unsigned(self, bits: int = 32) -> int:
        """An unsigned LEB128 integer of at most ``bits`` bits."""
        result = shift = 0
        start = self.pos
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= bits:
                raise _Malformed(f"integer too long at byte offset {start}")
        if result >> bits:
            raise _Malformed(f"integer out of range at byte offset {start}")
        return result

    def signed33(self) -> int:
        """A signed LEB128 integer of at most 33 bits (a heap type)."""
        result = shift = 0
        start = self.pos
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= 35:
                raise _Malformed(f"integer too long at byte offset {start}")
        if byte & 0x40:
            result -= 1 << shift
        return result

    def skip(self, count: int) -> None:
        if count > self.end - self.pos:
            raise _Malformed(f"unexpected end at byte offset {self.pos}")
        self.pos += count

    def name(self) -> str:
        length = self.unsigned()
        start = self.pos
        self.skip(length)
        try:
            return self.data[start : self.pos].decode()
        except UnicodeDecodeError:
            raise _Malformed(f"a name is not valid UTF-8 at byte offset {start}") from None


def _sections(wasm: bytes) -> list[_Section]:
    """Walk the section headers after the 8-byte preamble; refuse truncation and bad sizes."""
    sections: list[_Section] = []
    pos = 8
    while pos < len(wasm):
        number, section_id = len(sections) + 1, wasm[pos]
        label = f"section {number} ({_SECTION_NAMES.get(section_id, f'unknown id {section_id}')})"
        reader = _Reader(wasm, pos + 1, len(wasm))
        try:
            size = reader.unsigned()
        except _Malformed:
            truncated = reader.pos >= len(wasm)
            reason = "truncated" if truncated else "malformed"
            what = "is cut off" if truncated else "is not a valid LEB128 u32"
            raise InvalidWasm(
                f"{reason}: the size of {label} at byte offset {pos} {what}",
                details={"reason": reason, "section": number, "section_id": section_id},
            ) from None
        remaining = len(wasm) - reader.pos
        if size > remaining:
            raise InvalidWasm(
                f"truncated: {label} claims {size} bytes but only {remaining} remain "
                f"(at byte offset {pos}; was the upload cut short?)",
                details={
                    "reason": "truncated",
                    "section": number,
                    "section_id": section_id,
                    "offset": pos,
                    "claimed": size,
                    "remaining": remaining,
                },
            )
        sections.append(_Section(section_id, reader.pos, reader.pos + size))
        pos = reader.pos + size
    return sections


# Single-byte value type encodings (numbers, vectors and abbreviated reference types).
_VALTYPE_NAMES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x69: "exnref",
    0x68: "contref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x74: "nullexnref",
    0x75: "nullcontref",
}
_REF_NULL, _REF = 0x63, 0x64

_FuncTypes = list[tuple[tuple[str, ...], tuple[str, ...]] | None]


def _valtype(reader: _Reader) -> str:
    code = reader.byte()
    if code in (_REF_NULL, _REF):
        heap = reader.signed33()
        if code == _REF_NULL and heap in (-16, -17):  # (ref null func) / (ref null extern)
            return "funcref" if heap == -16 else "externref"
        null = "null " if code == _REF_NULL else ""
        target = _VALTYPE_NAMES.get(heap & 0x7F, "?").removesuffix("ref") if heap < 0 else heap
        return f"(ref {null}{target})"
    name = _VALTYPE_NAMES.get(code)
    if name is None:
        raise _Malformed(f"unknown value type 0x{code:02x} at byte offset {reader.pos - 1}")
    return name


def _types(reader: _Reader) -> _FuncTypes:
    """The type section: each type index's function signature, or None for non-function types."""
    types: _FuncTypes = []
    for _ in range(reader.unsigned()):
        if reader.data[reader.pos : reader.pos + 1] == b"\x4e":  # rec group
            reader.pos += 1
            types.extend(_subtype(reader) for _ in range(reader.unsigned()))
        else:
            types.append(_subtype(reader))
    return types


def _subtype(reader: _Reader) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    form = reader.byte()
    if form in (0x50, 0x4F):  # sub / sub final: supertypes, then the composite type
        for _ in range(reader.unsigned()):
            reader.unsigned()
        form = reader.byte()
    if form == 0x60:
        params = tuple(_valtype(reader) for _ in range(reader.unsigned()))
        results = tuple(_valtype(reader) for _ in range(reader.unsigned()))
        return params, results
    if form == 0x5F:  # struct
        for _ in range(reader.unsigned()):
            _field(reader)
        return None
    if form == 0x5E:  # array
        _field(reader)
        return None
    raise _Malformed(f"unsupported type form 0x{form:02x} at byte offset {reader.pos - 1}")


def _field(reader: _Reader) -> None:
    if reader.data[reader.pos : reader.pos + 1] in (b"\x78", b"\x77"):  # packed i8 / i16
        reader.pos += 1
    else:
        _valtype(reader)
    reader.byte()  # mutability


def _limits(reader: _Reader) -> None:
    flags = reader.byte()
    if flags & ~0x0F:
        raise _Malformed(f"invalid limits flags 0x{flags:02x} at byte offset {reader.pos - 1}")
    reader.unsigned(64)
    if flags & 0x01:
        reader.unsigned(64)
    if flags & 0x08:  # custom page size
        reader.unsigned()


def _imports(reader: _Reader) -> list[tuple[str, int]]:
    """The import section: ``("module.name", type index)`` of each imported function, in order."""
    funcs: list[tuple[str, int]] = []
    for _ in range(reader.unsigned()):
        name = f"{reader.name()}.{reader.name()}"
        kind = reader.byte()
        if kind == 0x00:
            funcs.append((name, reader.unsigned()))
        elif kind == 0x01:
            _valtype(reader)
            _limits(reader)
        elif kind == 0x02:
            _limits(reader)
        elif kind == 0x03:
            _valtype(reader)
            reader.byte()
        elif kind == 0x04:
            reader.byte()
            reader.unsigned()
        else:
            raise _Malformed(f"unknown import kind 0x{kind:02x} at byte offset {reader.pos - 1}")
    return funcs


def _check_linkable(wasm: bytes, sections: list[_Section]) -> None:
    """Refuse imported/exported functions whose signatures wasmtime-py cannot represent."""
    types: _FuncTypes = []
    func_types: list[int] = []
    imported: list[tuple[str, int]] = []
    exported: list[tuple[str, int]] = []
    for section in sections:
        reader = _Reader(wasm, section.start, section.end)
        name = _SECTION_NAMES.get(section.id, "")
        try:
            if section.id == 1:
                types = _types(reader)
            elif section.id == 2:
                imported = _imports(reader)
                func_types = [index for _, index in imported]
            elif section.id == 3:
                func_types += [reader.unsigned() for _ in range(reader.unsigned())]
            elif section.id == 7:
                for _ in range(reader.unsigned()):
                    export_name, kind, index = reader.name(), reader.byte(), reader.unsigned()
                    if kind == 0x00:
                        exported.append((export_name, index))
        except _Malformed as exc:
            raise InvalidWasm(
                f"malformed {name} section: {exc}",
                details={"reason": "malformed", "section": name},
            ) from None

    def signature(type_index: int) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        return types[type_index] if 0 <= type_index < len(types) else None

    offenders: list[str] = []
    unsupported: set[str] = set()
    candidates = [(f"import {name}", signature(index)) for name, index in imported]
    candidates += [
        (f"export {name}", signature(func_types[index]) if index < len(func_types) else None)
        for name, index in exported
    ]
    for label, sig in candidates:
        if sig is None:
            continue  # an invalid index: compilation reports it
        bad = {t for t in (*sig[0], *sig[1]) if t not in _LINKABLE_TYPES}
        if bad:
            offenders.append(label)
            unsupported |= bad
    if offenders:
        raise InvalidWasm(
            f"{_join(offenders)} {'uses' if len(offenders) == 1 else 'use'} value types Caxton"
            f" cannot link ({_join(sorted(unsupported))});"
            " imported and exported functions may use only i32, i64, f32, f64, funcref and"
            " externref",
            details={
                "reason": "unsupported_value_type",
                "functions": offenders,
                "types": sorted(unsupported),
            },
        )


# --------------------------------------------------------------------------------------------
# inspect_module: the compiled module


def inspect_module(module: wasmtime.Module, *, memory_limit: int) -> ModuleInfo:
    """Check a compiled module against agent ABI v1 and describe it.

    Precondition: the module's bytes passed `check_bytes` / `check_binary` (see the module
    docstring: otherwise wasmtime-py may abort the process on exotic signatures).

    Raises:
        InvalidWasm: with ``details["reason"]`` one of ``"missing_export"`` (``export`` names
            it), ``"wrong_export_kind"``, ``"wrong_signature"`` (``export``, ``expected``,
            ``actual``), ``"unsupported_imports"`` (``imports``: every offending import),
            ``"memory64"`` or ``"memory_limit"``.
    """
    try:
        exports = {export.name: export.type for export in module.exports}
        imports = [(imp.module, imp.name or "", imp.type) for imp in module.imports]
    except wasmtime.WasmtimeError as exc:  # an extern type wasmtime-py does not know
        raise InvalidWasm(
            f"the module uses an import or export kind Caxton does not support: {exc}",
            details={"reason": "unsupported_extern"},
        ) from exc

    kind: AgentKind
    if "caxton_handle" in exports:
        kind, funcs = "reactor", _REACTOR_FUNCS
    elif "_start" in exports:
        kind, funcs = "command", _COMMAND_FUNCS
    else:
        raise InvalidWasm(
            "missing export caxton_handle (reactor agents) or _start (command agents)",
            details={
                "reason": "missing_export",
                "export": "caxton_handle",
                "exports": sorted(exports),
            },
        )
    for name, expected, required in funcs:
        if name in exports:
            _check_function_export(name, exports[name], expected)
        elif required:
            raise InvalidWasm(
                f"missing export {name} {expected} ({kind} agents must export it)",
                details={"reason": "missing_export", "export": name, "kind": kind},
            )
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        what = "missing export memory" if memory is None else "export memory is not a memory"
        raise InvalidWasm(
            f'{what} ({kind} agents must export their linear memory as "memory")',
            details={"reason": "missing_export", "export": "memory", "kind": kind},
        )

    caxton, wasi = _check_imports(imports)
    initial, maximum = _memory_sizes(memory, memory_limit)
    return ModuleInfo(
        kind=kind,
        caxton_imports=frozenset(caxton),
        wasi_imports=frozenset(wasi),
        exports=frozenset(exports),
        initial_memory_bytes=initial,
        maximum_memory_bytes=maximum,
        has_initialize=kind == "reactor" and "_initialize" in exports,
        has_caxton_init=kind == "reactor" and "caxton_init" in exports,
    )


def _check_function_export(name: str, extern: Any, expected: Signature) -> None:
    if not isinstance(extern, wasmtime.FuncType):
        raise InvalidWasm(
            f"export {name} must be a function {expected}, but it is a {_extern_kind(extern)}",
            details={"reason": "wrong_export_kind", "export": name, "actual": _extern_kind(extern)},
        )
    actual = _signature(extern)
    if actual != expected:
        raise InvalidWasm(
            f"export {name} has signature {actual}; expected {expected}",
            details={
                "reason": "wrong_signature",
                "export": name,
                "expected": str(expected),
                "actual": str(actual),
            },
        )


def _check_imports(imports: Iterable[tuple[str, str, Any]]) -> tuple[list[str], list[str]]:
    """Return the caxton and WASI function names imported; refuse every other import at once."""
    caxton: list[str] = []
    wasi: list[str] = []
    problems: list[dict[str, str]] = []
    for module, name, extern in imports:
        kind = _extern_kind(extern)
        table = {CAXTON_MODULE: CAXTON_IMPORTS, WASI_MODULE: WASI_PREVIEW1}.get(module, {})
        expected = table.get(name)
        problem: dict[str, str] = {"module": module, "name": name, "kind": kind}
        if kind != "func" or expected is None:
            problems.append(problem | {"problem": "not_provided"})
            continue
        actual = _signature(extern)
        if actual != expected:
            problems.append(
                problem
                | {"problem": "wrong_signature", "expected": str(expected), "actual": str(actual)}
            )
            continue
        (caxton if module == CAXTON_MODULE else wasi).append(name)
    if problems:
        listed = [
            f"{p['module']}.{p['name']} ({p['kind']}"
            + (f" {p['actual']}, expected {p['expected']})" if "expected" in p else ")")
            for p in problems
        ]
        message = (
            f"imports not provided by Caxton: {', '.join(listed)}; agents may import only"
            " WASI preview 1 and the caxton ABI v1 functions"
        )
        if any(p["kind"] == "memory" for p in problems):
            message += " (an agent defines and exports its own memory: do not link with"
            message += " --import-memory)"
        raise InvalidWasm(message, details={"reason": "unsupported_imports", "imports": problems})
    return caxton, wasi


def _memory_sizes(memory: wasmtime.MemoryType, memory_limit: int) -> tuple[int, int | None]:
    if memory.is_64:
        raise InvalidWasm(
            "export memory is a 64-bit memory; agents use 32-bit linear memory (wasm32)",
            details={"reason": "memory64"},
        )
    page = memory.page_size
    limits = memory.limits
    initial = limits.min * page
    maximum = None if limits.max is None else limits.max * page
    if initial > memory_limit:
        raise InvalidWasm(
            f"initial memory {_size(initial)} exceeds the agent memory limit {_size(memory_limit)}",
            details={
                "reason": "memory_limit",
                "initial_memory_bytes": initial,
                "memory_limit_bytes": memory_limit,
            },
        )
    return initial, maximum


_KNOWN_VALTYPES = (
    ("i32", wasmtime.ValType.i32()),
    ("i64", wasmtime.ValType.i64()),
    ("f32", wasmtime.ValType.f32()),
    ("f64", wasmtime.ValType.f64()),
    ("funcref", wasmtime.ValType.funcref()),
    ("externref", wasmtime.ValType.externref()),
)


def _valtype_name(value: wasmtime.ValType) -> str:
    # str(ValType) raises for kinds wasmtime-py does not name; compare kinds instead.
    return next((name for name, known in _KNOWN_VALTYPES if value == known), "unknown")


def _signature(func: wasmtime.FuncType) -> Signature:
    return Signature(
        tuple(_valtype_name(v) for v in func.params),
        tuple(_valtype_name(v) for v in func.results),
    )


def _extern_kind(extern: object) -> str:
    kinds = {
        wasmtime.FuncType: "func",
        wasmtime.MemoryType: "memory",
        wasmtime.TableType: "table",
        wasmtime.GlobalType: "global",
    }
    return kinds.get(type(extern), type(extern).__name__.removesuffix("Type").lower())


def _size(n: int) -> str:
    """``64 MiB``, ``12 KiB``, or ``1.5 MiB (1572864 bytes)`` when not a round number."""
    for unit, name in ((_MIB, "MiB"), (_KIB, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    if n >= _MIB:
        return f"{n / _MIB:.1f} MiB ({n} bytes)"
    if n >= _KIB:
        return f"{n / _KIB:.1f} KiB ({n} bytes)"
    return f"{n} bytes"


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)
