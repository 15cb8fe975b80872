"""An agent's mutable globals, exported at deploy time so a snapshot can keep them.

A hibernated agent must come back exactly as it was. Its linear memory is saved, but a module
may also keep state in mutable globals that it does not export: AssemblyScript keeps its module
variables and its allocator's state there, C and Rust their shadow-stack pointer. wasmtime can
read and write only exported globals, so `plan_globals` reads the module's import, global and
export sections and, for a reactor, adds one export per mutable global the module does not export
itself, named ``caxton:global:<index>``. Nothing else in the module changes (the code, the
indices, the custom sections), and the name is not a valid C or Rust identifier, so it cannot
clash with an export the author meant.

Snapshots record globals by their *index* in the module (`SavedGlobal.index`), so a snapshot
taken under one naming still restores under another. Only ``i32``, ``i64``, ``f32`` and ``f64``
globals can be saved (values are kept as their raw bits: NaN payloads and ``-0.0`` survive). A
reactor with a mutable global of any other type (``v128``, a reference), or whose globals cannot
be read, gets `GlobalsPlan.unsaved` set to the reason: the runtime never hibernates it, and
``caxton debug`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from caxton.runtime.admission.validate import (
    _limits,
    _Malformed,
    _Reader,
    _Section,
    _sections,
    _valtype,
)

__all__ = ["EXPORT_PREFIX", "SAVED_TYPES", "GlobalsPlan", "SavedGlobal", "plan_globals"]

#: Prefix of the export names given to mutable globals the module does not export itself.
EXPORT_PREFIX = "caxton:global:"
#: Value types a snapshot keeps (as raw bits).
SAVED_TYPES = frozenset({"i32", "i64", "f32", "f64"})

_GLOBAL, _EXPORT, _EXPORT_KIND_GLOBAL = 6, 7, 0x03


@dataclass(frozen=True, slots=True)
class SavedGlobal:
    """One mutable global a snapshot keeps."""

    #: Its index in the module's global index space (imported globals first).
    index: int
    #: ``"i32"``, ``"i64"``, ``"f32"`` or ``"f64"``.
    type: str
    #: The export it is read and written through (the module's own, or ``caxton:global:N``).
    export: str


@dataclass(frozen=True, slots=True)
class GlobalsPlan:
    """What `plan_globals` decided for one module."""

    #: The module to compile: the original bytes, or with the added exports.
    wasm: bytes
    #: Every mutable global, in index order (empty when `unsaved` is set).
    saved: tuple[SavedGlobal, ...]
    #: Why a snapshot cannot keep this module's state (it is never hibernated), or None.
    unsaved: str | None = None

    @property
    def added(self) -> frozenset[str]:
        """The export names this plan added to the module."""
        return frozenset(g.export for g in self.saved if g.export.startswith(EXPORT_PREFIX))


@dataclass(frozen=True, slots=True)
class _Global:
    index: int
    type: str
    mutable: bool


def plan_globals(wasm: bytes) -> GlobalsPlan:
    """Export every mutable global of a reactor module that it does not export already.

    ``wasm`` must have passed `validate.check_binary`. A command module (no ``caxton_handle``
    export) is returned unchanged: each of its messages runs in a fresh instance, so there is
    nothing to keep. A module whose sections cannot be read is returned unchanged too (with
    `GlobalsPlan.unsaved` saying why); compiling it reports what is wrong.
    """
    sections = _sections(wasm)
    try:
        imported, defined, exports = _read(wasm, sections)
    except _Malformed as exc:
        return GlobalsPlan(wasm, (), f"its globals cannot be read: {exc}")
    if not any(name == "caxton_handle" and kind == 0x00 for name, kind, _ in exports):
        return GlobalsPlan(wasm, ())
    exported = {index: name for name, kind, index in exports if kind == _EXPORT_KIND_GLOBAL}
    mutable = [g for g in defined if g.mutable]
    others = [g for g in mutable if g.type not in SAVED_TYPES]
    if others:
        listed = ", ".join(f"global {g.index} ({g.type})" for g in others)
        return GlobalsPlan(
            wasm, (), f"a snapshot cannot keep mutable globals of this type: {listed}"
        )
    if imported and any(g.mutable for g in imported):
        return GlobalsPlan(wasm, (), "it imports a mutable global")
    names = {name for name, _, _ in exports}
    saved: list[SavedGlobal] = []
    added: list[tuple[str, int]] = []
    for g in mutable:
        name = exported.get(g.index)
        if name is None:
            name = f"{EXPORT_PREFIX}{g.index}"
            while name in names:
                name += "'"
            names.add(name)
            added.append((name, g.index))
        saved.append(SavedGlobal(g.index, g.type, name))
    if added:
        wasm = _with_exports(wasm, sections, len(exports), added)
    return GlobalsPlan(wasm, tuple(saved))


def _read(
    wasm: bytes, sections: list[_Section]
) -> tuple[list[_Global], list[_Global], list[tuple[str, int, int]]]:
    """(imported globals, defined globals, exports as (name, kind, index))."""
    imported: list[_Global] = []
    defined: list[_Global] = []
    exports: list[tuple[str, int, int]] = []
    for section in sections:
        reader = _Reader(wasm, section.start, section.end)
        if section.id == 2:
            imported = [_Global(i, t, m) for i, (t, m) in enumerate(_imported_globals(reader))]
        elif section.id == _GLOBAL:
            for _ in range(reader.unsigned()):
                kind, mutable = _valtype(reader), reader.byte()
                if mutable > 1:
                    raise _Malformed(f"invalid mutability 0x{mutable:02x}")
                _skip_const_expr(reader)
                defined.append(_Global(len(imported) + len(defined), kind, mutable == 1))
        elif section.id == _EXPORT:
            for _ in range(reader.unsigned()):
                exports.append((reader.name(), reader.byte(), reader.unsigned()))
    return imported, defined, exports


def _imported_globals(reader: _Reader) -> list[tuple[str, bool]]:
    """The import section's globals as (type, mutable), skipping the other kinds."""
    found: list[tuple[str, bool]] = []
    for _ in range(reader.unsigned()):
        reader.name()
        reader.name()
        kind = reader.byte()
        if kind == 0x00:  # function: a type index
            reader.unsigned()
        elif kind == 0x01:  # table: a reference type and limits
            _valtype(reader)
            _limits(reader)
        elif kind == 0x02:  # memory
            _limits(reader)
        elif kind == 0x03:
            found.append((_valtype(reader), reader.byte() == 1))
        elif kind == 0x04:  # tag: an attribute and a type index
            reader.byte()
            reader.unsigned()
        else:
            raise _Malformed(f"unknown import kind 0x{kind:02x}")
    return found


def _skip_const_expr(reader: _Reader) -> None:
    """Skip a constant expression up to and including its ``end``."""
    while True:
        opcode = reader.byte()
        if opcode == 0x0B:  # end
            return
        if opcode in (0x41, 0x42):  # i32.const, i64.const: a signed LEB128
            while reader.byte() & 0x80:
                pass
        elif opcode == 0x43:  # f32.const
            reader.skip(4)
        elif opcode == 0x44:  # f64.const
            reader.skip(8)
        elif opcode in (0x23, 0xD2):  # global.get, ref.func
            reader.unsigned()
        elif opcode == 0xD0:  # ref.null
            reader.signed33()
        elif opcode in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended constant arithmetic
            pass
        elif opcode == 0xFD and reader.unsigned() == 12:  # v128.const
            reader.skip(16)
        else:
            raise _Malformed(f"unsupported constant instruction 0x{opcode:02x}")


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _with_exports(
    wasm: bytes, sections: list[_Section], count: int, added: list[tuple[str, int]]
) -> bytes:
    """``wasm`` with ``added`` (name, global index) appended to its export section."""
    section = next(s for s in sections if s.id == _EXPORT)
    reader = _Reader(wasm, section.start, section.end)
    reader.unsigned()  # the old count
    entries = wasm[reader.pos : section.end]
    for name, index in added:
        raw = name.encode()
        entries += _leb(len(raw)) + raw + bytes([_EXPORT_KIND_GLOBAL]) + _leb(index)
    body = _leb(count + len(added)) + entries
    # Sections are contiguous: this one's header starts where the one before it ends.
    position = sections.index(section)
    head = sections[position - 1].end if position else 8
    return wasm[:head] + bytes([_EXPORT]) + _leb(len(body)) + body + wasm[section.end :]
