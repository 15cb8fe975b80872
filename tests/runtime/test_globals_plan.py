"""Deploy-time export of mutable globals (`plan_globals`), so snapshots can keep them."""

from __future__ import annotations

import wasmtime

from caxton.runtime import Engine
from caxton.runtime.admission.globals import GlobalsPlan, SavedGlobal, plan_globals
from caxton.runtime.admission.validate import check_binary
from tests.support import FAST, example, wat

ENGINE = wasmtime.Engine()

REACTOR = """
(module
  (memory (export "memory") 1)
  (global $a (mut i32) (i32.const 1))
  (global $k i64 (i64.const 2))
  (global $b (mut f64) (f64.const 0.5))
  (global $c (mut i64) (i64.add (i64.const 1) (i64.const 2)))
  (export "b" (global $b))
  %s
  (func (export "caxton_alloc") (param i32) (result i32) (global.get $a))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
"""


def plan(text: str) -> GlobalsPlan:
    binary = bytes(wasmtime.wat2wasm(text))
    check_binary(binary)
    return plan_globals(binary)


def exported_globals(binary: bytes) -> dict[str, str]:
    module = wasmtime.Module(ENGINE, binary)
    return {
        e.name: str(e.type.content)
        for e in module.exports
        if isinstance(e.type, wasmtime.GlobalType) and e.type.mutable
    }


def test_every_mutable_global_is_exported_and_its_own_export_is_reused() -> None:
    result = plan(REACTOR % "")
    assert result.unsaved is None
    assert result.saved == (
        SavedGlobal(0, "i32", "caxton:global:0"),
        SavedGlobal(2, "f64", "b"),
        SavedGlobal(3, "i64", "caxton:global:3"),
    )
    assert result.added == {"caxton:global:0", "caxton:global:3"}
    assert exported_globals(result.wasm) == {
        "caxton:global:0": "i32",
        "b": "f64",
        "caxton:global:3": "i64",
    }


def test_an_added_name_never_takes_an_export_of_the_module() -> None:
    taken = '(func (export "caxton:global:0"))'
    result = plan(REACTOR % taken)
    assert result.saved[0] == SavedGlobal(0, "i32", "caxton:global:0'")
    assert "caxton:global:0'" in exported_globals(result.wasm)


def test_the_rewrite_changes_nothing_but_the_exports() -> None:
    original = bytes(wasmtime.wat2wasm(REACTOR % ""))
    rewritten = plan_globals(original).wasm
    before, after = wasmtime.Module(ENGINE, original), wasmtime.Module(ENGINE, rewritten)
    assert len(after.exports) == len(before.exports) + 2
    assert [(i.module, i.name) for i in after.imports] == [
        (i.module, i.name) for i in before.imports
    ]
    # Everything before the export section is the same bytes.
    assert rewritten[:40] == original[:40]


def test_modules_without_mutable_globals_and_commands_are_left_alone() -> None:
    immutable = REACTOR.replace("(mut i32)", "i32").replace("(mut f64)", "f64")
    nothing = bytes(wasmtime.wat2wasm(immutable.replace("(mut i64)", "i64").replace("%s", "")))
    assert plan_globals(nothing) == GlobalsPlan(nothing, ())
    command = bytes(
        wasmtime.wat2wasm(
            '(module (memory (export "memory") 1) (global (mut i32) (i32.const 0))'
            ' (func (export "_start")))'
        )
    )
    assert plan_globals(command) == GlobalsPlan(command, ())


def test_a_mutable_global_of_another_type_makes_the_agent_unsaveable() -> None:
    text = REACTOR % "(global (mut v128) (v128.const i64x2 0 0))"
    result = plan(text)
    assert (result.saved, result.wasm) == ((), bytes(wasmtime.wat2wasm(text)))
    assert result.unsaved is not None
    assert "global 4 (v128)" in result.unsaved


def test_the_c_examples_keep_their_stack_pointer() -> None:
    result = plan_globals(example("counter"))
    assert result.unsaved is None
    assert [g.type for g in result.saved] == ["i32"]  # clang's __stack_pointer


def test_the_engine_compiles_the_rewritten_module_and_hides_the_added_exports() -> None:
    engine = Engine(FAST, cache_dir=None)
    try:
        compiled = engine.compile(wat("globalcount"))
    finally:
        engine.close()
    assert compiled.info.exports == {"memory", "caxton_alloc", "caxton_init", "caxton_handle"}
    assert [g.export for g in compiled.info.saved_globals] == [
        f"caxton:global:{i}" for i in range(4)
    ]
    assert compiled.info.unsaved_state is None
