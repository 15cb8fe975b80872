"""Agent module validation: raw bytes (`check_bytes`) and compiled modules (`inspect_module`)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caxton.errors import InvalidWasm, ModuleTooLarge
from caxton.runtime.admission.validate import (
    CAXTON_IMPORTS,
    ModuleInfo,
    check_binary,
    check_bytes,
    inspect_module,
)
from caxton.runtime.admission.wasi import WASI_PREVIEW1, Signature

MIB = 1024 * 1024
ENGINE = wasmtime.Engine()

REACTOR = """
(module
  (import "caxton" "send" (func (param i32 i32) (result i32)))
  (import "caxton" "log" (func (param i32 i32 i32)))
  (import "caxton" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "kv_set" (func (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "kv_delete" (func (param i32 i32) (result i32)))
  (import "caxton" "schedule" (func (param i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2 16)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
  (func (export "_initialize"))
  (func (export "caxton_init") (result i32) (i32.const 0)))
"""

COMMAND = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
"""

# Exports that make a module a valid reactor, to combine with the import under test.
REACTOR_EXPORTS = """
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
"""


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def inspect(wat: str, *, memory_limit: int = 64 * MIB) -> ModuleInfo:
    binary = wasm(wat)
    check_binary(binary)
    return inspect_module(wasmtime.Module(ENGINE, binary), memory_limit=memory_limit)


def refused(wat: str, *, memory_limit: int = 64 * MIB) -> InvalidWasm:
    with pytest.raises(InvalidWasm) as info:
        inspect(wat, memory_limit=memory_limit)
    return info.value


def check_refused(data: bytes, *, max_size: int = 10 * MIB) -> InvalidWasm:
    with pytest.raises(InvalidWasm) as info:
        check_bytes(data, max_size=max_size)
    return info.value


# --- check_bytes ---------------------------------------------------------------------------


def test_valid_modules_pass_check_bytes() -> None:
    check_bytes(wasm(REACTOR), max_size=10 * MIB)
    check_bytes(wasm(COMMAND), max_size=10 * MIB)


def test_empty() -> None:
    error = check_refused(b"")
    assert error.message == "the module is empty (0 bytes)"
    assert error.details == {"reason": "empty"}


def test_too_large_names_both_sizes() -> None:
    data = wasm(REACTOR)
    with pytest.raises(ModuleTooLarge) as info:
        check_bytes(data, max_size=100)
    assert info.value.status == 413
    assert info.value.details == {"size": len(data), "max_size": 100}
    assert f"{len(data)} bytes" in info.value.message
    assert "100 bytes" in info.value.message


def test_too_large_in_mebibytes() -> None:
    with pytest.raises(ModuleTooLarge) as info:
        check_bytes(b"\0asm\x01\0\0\0" + bytes(MIB), max_size=MIB)
    assert info.value.message == ("the module is 1.0 MiB (1048584 bytes), above the limit of 1 MiB")


def test_wat_text_is_named() -> None:
    error = check_refused(b"  ;; my agent\n(module (func))")
    assert error.message.startswith("not a WebAssembly module: it starts with 20 20 3b 3b")
    assert error.message.endswith(
        "this looks like WebAssembly text (.wat); compile it with wat2wasm or send the binary"
    )
    assert error.details["reason"] == "not_wasm"
    assert error.details["detected"] == "wat"
    assert error.status == 400


@pytest.mark.parametrize(
    ("data", "detected", "hint"),
    [
        pytest.param(b"\x7fELF\x02\x01\x01\0" + bytes(64), "elf", "ELF", id="elf"),
        pytest.param(b"MZ\x90\0\x03\0\0\0", "pe", "Windows executable", id="pe"),
        pytest.param(gzip.compress(b"\0asm\x01\0\0\0"), "gzip", "gzip", id="gzip"),
        pytest.param(b"PK\x03\x04\x14\0\0\0", "zip", "zip archive", id="zip"),
        pytest.param(b'{"name": "agent", "wasm": "..."}', "json", "JSON", id="json"),
        pytest.param(b"\n<!DOCTYPE html><html>404</html>", "html", "HTML", id="html"),
        pytest.param(base64.b64encode(b"\0asm\x01\0\0\0"), "base64", "base64", id="base64"),
        pytest.param(b"#!/bin/sh\necho hi\n", "script", "script", id="script"),
        pytest.param(b"\x01\x02\x03\x04\x05", "unknown", "expected 00 61 73 6d", id="unknown"),
    ],
)
def test_common_mistakes_are_named(data: bytes, detected: str, hint: str) -> None:
    error = check_refused(data)
    assert error.message.startswith("not a WebAssembly module: it starts with ")
    assert hint in error.message
    assert error.details["detected"] == detected
    assert error.details["prefix"] == data[:8].hex(" ")


def test_component_is_refused() -> None:
    error = check_refused(b"\0asm\x0d\x00\x01\x00")
    assert "components are not supported; build a core module (wasm32-wasi / wasm32-wasip1)" in (
        error.message
    )
    assert error.details == {"reason": "component", "version": 0x0D, "layer": 1}


def test_unknown_version_is_refused() -> None:
    error = check_refused(b"\0asm\x02\0\0\0")
    assert error.message.startswith("unsupported WebAssembly binary version 02 00 00 00")
    assert error.details == {"reason": "unsupported_version", "version": "02000000"}


@pytest.mark.parametrize(
    "data", [b"\0", b"\0as", b"\0asm", b"\0asm\x01\0\0"], ids=["1", "3", "4", "7"]
)
def test_truncated_header(data: bytes) -> None:
    error = check_refused(data)
    assert error.message == (
        f"truncated: the module is {len(data)} bytes, shorter than the 8-byte header"
    )
    assert error.details == {"reason": "truncated", "size": len(data)}


def test_truncated_section_says_how_much_is_missing() -> None:
    data = wasm(REACTOR)
    cut = data[: len(data) - 10]
    error = check_refused(cut)
    assert error.message.startswith("truncated: section ")
    assert "(code) claims " in error.message
    details = error.details
    assert details["reason"] == "truncated"
    assert details["section_id"] == 10
    assert details["claimed"] - details["remaining"] == 10
    assert f"claims {details['claimed']} bytes but only {details['remaining']} remain" in (
        error.message
    )


def test_truncated_section_size() -> None:
    error = check_refused(b"\0asm\x01\0\0\0\x01\x80")
    assert error.message == ("truncated: the size of section 1 (type) at byte offset 8 is cut off")
    assert error.details["reason"] == "truncated"


def test_malformed_section_size() -> None:
    error = check_refused(b"\0asm\x01\0\0\0\x00\xff\xff\xff\xff\xff\x01")
    assert error.message == (
        "malformed: the size of section 1 (custom) at byte offset 8 is not a valid LEB128 u32"
    )


def test_truncated_first_section_of_empty_body() -> None:
    error = check_refused(b"\0asm\x01\0\0\0\x01\x05\x01")
    assert error.message == (
        "truncated: section 1 (type) claims 5 bytes but only 1 remain "
        "(at byte offset 8; was the upload cut short?)"
    )
    assert error.details == {
        "reason": "truncated",
        "section": 1,
        "section_id": 1,
        "offset": 8,
        "claimed": 5,
        "remaining": 1,
    }


def test_malformed_import_section() -> None:
    # one import: module "a", name "b", kind 0x09 (no such kind)
    body = b"\x01\x01a\x01b\x09"
    error = check_refused(b"\0asm\x01\0\0\0\x02" + bytes([len(body)]) + body)
    assert error.message == "malformed import section: unknown import kind 0x09 at byte offset 15"
    assert error.details == {"reason": "malformed", "section": "import"}


@pytest.mark.parametrize(
    ("wat", "function", "types"),
    [
        pytest.param(
            '(module (func (export "simd") (param v128)))', "export simd", ["v128"], id="v128"
        ),
        pytest.param(
            '(module (type $t (func)) (import "env" "f" (func (param (ref null $t)))))',
            "import env.f",
            ["(ref null 0)"],
            id="typed-ref",
        ),
        pytest.param(
            '(module (func (export "g") (result anyref) (ref.null any)))',
            "export g",
            ["anyref"],
            id="anyref",
        ),
    ],
)
def test_unlinkable_value_types_are_refused_before_compiling(
    wat: str, function: str, types: list[str]
) -> None:
    # wasmtime-py aborts the process when asked for these parameter types, so they never get
    # as far as inspect_module.
    error = check_refused(wasm(wat))
    assert error.details == {
        "reason": "unsupported_value_type",
        "functions": [function],
        "types": types,
    }
    assert error.message.startswith(f"{function} uses value types Caxton cannot link (")


def test_v128_inside_the_module_is_fine() -> None:
    check_bytes(
        wasm(
            """(module
              (type $simd (func (param v128) (result v128)))
              (func $double (type $simd) (i32x4.add (local.get 0) (local.get 0)))
              (func (export "f") (param i32 funcref externref) (result f64) (f64.const 1)))"""
        ),
        max_size=MIB,
    )


def test_gc_rec_groups_are_parsed() -> None:
    check_bytes(
        wasm(
            """(module
              (rec (type $t (sub (func (param i32)))) (type $s (struct (field i8) (field i32))))
              (type $a (array (mut i16)))
              (import "caxton" "kv_delete" (func (param i32 i32) (result i32)))
              (func (export "g") (type $t)))"""
        ),
        max_size=MIB,
    )


# --- inspect_module ------------------------------------------------------------------------


def test_valid_reactor() -> None:
    assert inspect(REACTOR) == ModuleInfo(
        kind="reactor",
        caxton_imports=frozenset(CAXTON_IMPORTS),
        wasi_imports=frozenset({"fd_write"}),
        exports=frozenset(
            {"memory", "caxton_alloc", "caxton_handle", "_initialize", "caxton_init"}
        ),
        initial_memory_bytes=2 * 65536,
        maximum_memory_bytes=16 * 65536,
        has_initialize=True,
        has_caxton_init=True,
    )


def test_minimal_reactor_has_no_optional_exports() -> None:
    info = inspect(f"(module {REACTOR_EXPORTS})")
    assert info.kind == "reactor"
    assert (info.has_initialize, info.has_caxton_init) == (False, False)
    assert info.caxton_imports == info.wasi_imports == frozenset()
    assert info.maximum_memory_bytes is None


def test_valid_command() -> None:
    assert inspect(COMMAND) == ModuleInfo(
        kind="command",
        caxton_imports=frozenset(),
        wasi_imports=frozenset({"fd_write", "proc_exit"}),
        exports=frozenset({"memory", "_start"}),
        initial_memory_bytes=65536,
        maximum_memory_bytes=None,
        has_initialize=False,
        has_caxton_init=False,
    )


def test_command_with_caxton_imports_is_a_command() -> None:
    info = inspect(
        """(module (import "caxton" "log" (func (param i32 i32 i32)))
           (memory (export "memory") 1) (func (export "_start")))"""
    )
    assert info.kind == "command"
    assert info.caxton_imports == frozenset({"log"})


def test_caxton_handle_wins_over_start() -> None:
    info = inspect(f'(module {REACTOR_EXPORTS} (func (export "_start")))')
    assert info.kind == "reactor"


def test_no_entry_point() -> None:
    error = refused('(module (memory (export "memory") 1) (func (export "main")))')
    assert error.message == (
        "missing export caxton_handle (reactor agents) or _start (command agents)"
    )
    assert error.details == {
        "reason": "missing_export",
        "export": "caxton_handle",
        "exports": ["main", "memory"],
    }


@pytest.mark.parametrize(
    ("wat", "export"),
    [
        pytest.param(
            """(module (memory (export "memory") 1)
               (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))""",
            "caxton_alloc",
            id="reactor-without-alloc",
        ),
        pytest.param(
            """(module (memory 1)
               (func (export "caxton_alloc") (param i32) (result i32) (i32.const 0))
               (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))""",
            "memory",
            id="reactor-without-memory",
        ),
        pytest.param('(module (func (export "_start")))', "memory", id="command-without-memory"),
    ],
)
def test_missing_required_export(wat: str, export: str) -> None:
    error = refused(wat)
    assert error.details["reason"] == "missing_export"
    assert error.details["export"] == export
    assert error.message.startswith(f"missing export {export} ")


def test_memory_exported_as_something_else() -> None:
    error = refused(
        """(module (global (export "memory") i32 (i32.const 0))
           (func (export "_start")))"""
    )
    assert error.message == (
        'export memory is not a memory (command agents must export their linear memory as "memory")'
    )


@pytest.mark.parametrize(
    ("export", "wat_func", "expected", "actual"),
    [
        (
            "caxton_handle",
            "(param i32) (result i32) (i32.const 0)",
            "(i32, i32) -> i32",
            "(i32) -> i32",
        ),
        ("caxton_handle", "(param i32 i32)", "(i32, i32) -> i32", "(i32, i32) -> ()"),
        ("caxton_alloc", "(param i64) (result i64) (i64.const 0)", "(i32) -> i32", "(i64) -> i64"),
        ("caxton_alloc", "(param f32) (result i32) (i32.const 0)", "(i32) -> i32", "(f32) -> i32"),
        ("_initialize", "(result i32) (i32.const 0)", "() -> ()", "() -> i32"),
        ("caxton_init", "", "() -> i32", "() -> ()"),
        (
            "caxton_init",
            "(result i32 i32) (i32.const 0) (i32.const 0)",
            "() -> i32",
            "() -> (i32, i32)",
        ),
    ],
)
def test_wrong_reactor_signature(export: str, wat_func: str, expected: str, actual: str) -> None:
    good = {
        "caxton_alloc": "(param i32) (result i32) (i32.const 0)",
        "caxton_handle": "(param i32 i32) (result i32) (i32.const 0)",
    }
    good[export] = wat_func
    funcs = "".join(f'(func (export "{name}") {body})' for name, body in good.items())
    error = refused(f'(module (memory (export "memory") 1) {funcs})')
    assert error.message == f"export {export} has signature {actual}; expected {expected}"
    assert error.details == {
        "reason": "wrong_signature",
        "export": export,
        "expected": expected,
        "actual": actual,
    }


def test_wrong_start_signature() -> None:
    error = refused('(module (memory (export "memory") 1) (func (export "_start") (param i32)))')
    assert error.message == "export _start has signature (i32) -> (); expected () -> ()"


def test_abi_export_that_is_not_a_function() -> None:
    error = refused(
        """(module (memory (export "memory") 1)
           (global (export "caxton_alloc") i32 (i32.const 0))
           (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))"""
    )
    assert (
        error.message == "export caxton_alloc must be a function (i32) -> i32, but it is a global"
    )
    assert error.details["reason"] == "wrong_export_kind"


def test_every_bad_import_is_named() -> None:
    error = refused(
        """(module
          (import "env" "foo" (func))
          (import "env" "memory" (memory 1))
          (import "env" "table" (table 1 funcref))
          (import "env" "g" (global i32))
          (import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
          (import "caxton" "spawn" (func (param i32 i32) (result i32)))
          (import "caxton" "send" (func (param i32 i32 i32) (result i32)))
          (import "caxton" "log" (func (param i32 i32 i32)))
          (func (export "caxton_alloc") (param i32) (result i32) (i32.const 0))
          (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
          (memory (export "memory") 1))"""
    )
    assert error.message == (
        "imports not provided by Caxton: env.foo (func), env.memory (memory), env.table (table),"
        " env.g (global), wasi_snapshot_preview1.sock_open (func),"
        " wasi_snapshot_preview1.fd_write (func (i32) -> i32,"
        " expected (i32, i32, i32, i32) -> i32), caxton.spawn (func),"
        " caxton.send (func (i32, i32, i32) -> i32, expected (i32, i32) -> i32);"
        " agents may import only WASI preview 1 and the caxton ABI v1 functions"
        " (an agent defines and exports its own memory: do not link with --import-memory)"
    )
    assert error.details["reason"] == "unsupported_imports"
    imports: list[dict[str, Any]] = error.details["imports"]
    assert [f"{i['module']}.{i['name']}" for i in imports] == [
        "env.foo",
        "env.memory",
        "env.table",
        "env.g",
        "wasi_snapshot_preview1.sock_open",
        "wasi_snapshot_preview1.fd_write",
        "caxton.spawn",
        "caxton.send",
    ]
    assert imports[5] == {
        "module": "wasi_snapshot_preview1",
        "name": "fd_write",
        "kind": "func",
        "problem": "wrong_signature",
        "expected": "(i32, i32, i32, i32) -> i32",
        "actual": "(i32) -> i32",
    }


def test_single_foreign_import() -> None:
    error = refused(f'(module (import "env" "foo" (func)) {REACTOR_EXPORTS})')
    assert error.message == (
        "imports not provided by Caxton: env.foo (func); agents may import only WASI preview 1"
        " and the caxton ABI v1 functions"
    )


def test_imported_wasi_memory_is_refused() -> None:
    error = refused(
        """(module (import "wasi_snapshot_preview1" "memory" (memory 1))
           (func (export "_start")) (export "memory" (memory 0)))"""
    )
    assert error.details["imports"] == [
        {
            "module": "wasi_snapshot_preview1",
            "name": "memory",
            "kind": "memory",
            "problem": "not_provided",
        }
    ]
    assert "--import-memory" in error.message


def test_initial_memory_above_limit() -> None:
    error = refused('(module (memory (export "memory") 2048) (func (export "_start")))')
    assert error.message == "initial memory 128 MiB exceeds the agent memory limit 64 MiB"
    assert error.details == {
        "reason": "memory_limit",
        "initial_memory_bytes": 128 * MIB,
        "memory_limit_bytes": 64 * MIB,
    }


def test_initial_memory_at_limit_is_fine() -> None:
    info = inspect('(module (memory (export "memory") 1024) (func (export "_start")))')
    assert info.initial_memory_bytes == 64 * MIB


def test_memory64_is_refused() -> None:
    error = refused('(module (memory (export "memory") i64 1) (func (export "_start")))')
    assert error.details == {"reason": "memory64"}


def test_wasi_table_matches_wasmtime() -> None:
    """Every WASI entry links against wasmtime's own preview 1 implementation."""

    def func(sig: Signature) -> str:
        params = f"(param {' '.join(sig.params)})" if sig.params else ""
        results = f"(result {' '.join(sig.results)})" if sig.results else ""
        return f"(func {params} {results})"

    imports = "".join(
        f'(import "wasi_snapshot_preview1" "{name}" {func(sig)})'
        for name, sig in WASI_PREVIEW1.items()
    )
    info = inspect(f'(module {imports} (memory (export "memory") 1) (func (export "_start")))')
    assert info.wasi_imports == frozenset(WASI_PREVIEW1)
    module = wasmtime.Module(ENGINE, wasm(f"(module {imports})"))
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    store = wasmtime.Store(ENGINE)
    store.set_wasi(wasmtime.WasiConfig())
    linker.instantiate(store, module)


def test_signature_formatting() -> None:
    assert str(Signature((), ())) == "() -> ()"
    assert str(Signature(("i64", "i32"), ("i32",))) == "(i64, i32) -> i32"
    assert str(Signature(("i32",), ("i32", "i32"))) == "(i32) -> (i32, i32)"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang with wasm32-wasi")
def test_clang_reactor_passes(tmp_path: Path) -> None:
    source = tmp_path / "agent.c"
    source.write_text(
        """
        #include <stdio.h>
        #include <stdlib.h>
        __attribute__((import_module("caxton"), import_name("send")))
        int cx_send(const char *, int);
        __attribute__((export_name("caxton_alloc"))) void *caxton_alloc(int n) { return malloc(n); }
        __attribute__((export_name("caxton_handle"))) int caxton_handle(char *p, int n) {
            printf("%.*s\\n", n, p);
            free(p);
            return cx_send("{}", 2);
        }
        """
    )
    output = tmp_path / "agent.wasm"
    subprocess.run(
        ["clang", "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o", output, source],
        check=True,
    )
    binary = output.read_bytes()
    check_bytes(binary, max_size=10 * MIB)
    info = inspect_module(wasmtime.Module(ENGINE, binary), memory_limit=64 * MIB)
    assert info.kind == "reactor"
    assert info.caxton_imports == frozenset({"send"})
    assert "fd_write" in info.wasi_imports
    assert info.has_initialize


# --- properties ----------------------------------------------------------------------------

VALID = [wasm(REACTOR), wasm(COMMAND)]


@given(st.binary(max_size=300))
def test_check_bytes_only_raises_caxton_errors(data: bytes) -> None:
    with contextlib.suppress(InvalidWasm, ModuleTooLarge):
        check_bytes(data, max_size=200)


@given(st.binary(max_size=200))
def test_check_bytes_after_a_valid_header(tail: bytes) -> None:
    with contextlib.suppress(InvalidWasm):
        check_bytes(b"\0asm\x01\0\0\0" + tail, max_size=MIB)


@st.composite
def mutated_modules(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(8, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_modules())
def test_inspect_never_crashes_on_checked_modules(data: bytes) -> None:
    try:
        check_bytes(data, max_size=MIB)
        module = wasmtime.Module(ENGINE, data)
    except (InvalidWasm, wasmtime.WasmtimeError):
        return
    with contextlib.suppress(InvalidWasm):
        inspect_module(module, memory_limit=64 * MIB)


def test_caxton_imports_match_the_host_functions() -> None:
    """The table checked at deploy time is the one `runtime.abi` defines host functions from."""
    from caxton.runtime import abi

    host = {
        name: Signature(tuple(map(str, params)), tuple(map(str, results)))
        for name, (params, results) in abi.HOST_SIGNATURES.items()
    }
    assert host == dict(CAXTON_IMPORTS)
    assert CAXTON_IMPORTS is abi.HOST_IMPORTS  # one table, not two that happen to agree
