"""The two hot paths (the C extension and ctypes) behave the same; the extension gets built.

Most runtime tests run against both flavours through the parametrized ``engine`` fixture; these
cover what only the entry points and host-function adapters themselves decide.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shlex
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import _ffi as ffi

from caxton.runtime import Engine, Runtime
from caxton.runtime.sandbox import _ffi, accel, host
from caxton.runtime.sandbox.instance import Instance
from caxton.wire import trace as wire_trace
from tests.support import FAST, message, wat

from .conftest import FLAVOURS, Deploy, Recorder


def _compiler_present() -> bool:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = Path(sysconfig.get_paths()["include"])
    return shutil.which(cc[0]) is not None and (include / "Python.h").exists()


def test_the_c_hot_path_is_built_wherever_a_compiler_is(monkeypatch: pytest.MonkeyPatch) -> None:
    built = importlib.util.find_spec("caxton.runtime.sandbox._accel") is not None
    if _compiler_present():
        assert built, "a C compiler is installed but caxton.runtime.sandbox._accel was not built"
    if os.environ.get("CAXTON_ACCEL") == "0":  # the documented switch: this run uses ctypes
        assert accel.ACCEL is None
        assert accel.describe() == "ctypes"
        return
    assert (accel.ACCEL is not None) == built
    assert accel.describe() == ("c" if built else "ctypes")
    monkeypatch.setenv("CAXTON_ACCEL", "0")
    assert accel.load() is None


def test_asking_for_the_c_path_without_it_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accel, "ACCEL", None)
    with pytest.raises(RuntimeError, match="C hot path"):
        Engine(FAST, cache_dir=None, accelerated=True)


async def test_an_allocator_pointer_outside_memory_fails_the_message(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("bad", wat("badptr"))
    runtime.deliver_nowait("bad", message("bad", "x" * 100))
    name, data, failure = await recorder.failure()
    assert (name, failure.cause) == ("bad", "trap")
    assert "outside memory" in failure.message
    assert b"xxxx" in data
    assert runtime.agent_statistics("bad").restarts == 1


async def test_a_message_larger_than_the_first_memory_grows_it(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    """The entry re-reads the memory size when the allocator grew memory for the message."""
    await deploy("echo", wat("echo"))
    big = "y" * (200 * 1024)  # more than echo's initial memory
    runtime.deliver_nowait("echo", message("echo", big))
    reply = await recorder.reply()
    assert reply["content"]["content"] == big


@pytest.fixture(params=FLAVOURS)
def entry_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = Engine(FAST, cache_dir=None, accelerated=request.param == "c")
    yield engine
    engine.close()


def _instance(engine: Engine, name: str) -> Instance:
    compiled, _ = engine.compile(wat(name))
    return Instance(
        engine.wasm,
        engine.instance_pre(compiled),
        reactor=True,
        name=name,
        env={},
        grant_dir=None,
        memory_limit=FAST.wasm_memory_limit,
        fuel=None,
        deadline_ticks=1000,
        stdout=len,
        stderr=len,
        entry_type=engine.entry_type,
    )


@pytest.mark.parametrize("data", [b"{}", bytearray(b"{}"), memoryview(b"{}")])
def test_the_entry_takes_any_buffer(entry_engine: Engine, data: Any) -> None:
    nop, fail = _instance(entry_engine, "nop"), _instance(entry_engine, "fail")
    try:
        assert nop.entry is not None
        assert fail.entry is not None
        assert nop.entry.deliver(data) == 0
        assert fail.entry.deliver(data) == 1  # the handler's own result
    finally:
        nop.close()
        fail.close()


def test_a_trap_is_handed_over_once(entry_engine: Engine) -> None:
    inst = _instance(entry_engine, "trap")
    try:
        assert inst.entry is not None
        assert inst.entry.deliver(b"{}") == _ffi.FAILED
        error, trap = inst.entry.take_failure()
        assert error == 0
        assert trap != 0
        assert "unreachable" in str(_ffi.trap_from_ptr(trap))
        assert inst.entry.take_failure() == (0, 0)
    finally:
        inst.close()


def test_the_c_extension_refuses_bad_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAXTON_ACCEL", raising=False)
    module = accel.load()
    if module is None:  # not built: only where no compiler is (see the first test)
        assert not _compiler_present()
        return
    with pytest.raises(ValueError, match="alloc"):
        module.Reactor(1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="kinds"):
        module.HostFunction(len, "ix", True)
    with pytest.raises(TypeError, match="callable"):
        module.HostFunction(3, "i", True)
    context = module.TraceContext()
    with pytest.raises(TypeError):
        context.begin("not bytes", "agent")
    with pytest.raises(TypeError, match="agent: str"):
        context.begin(b"{}", None)
    with pytest.raises(RuntimeError, match="before a traced message"):
        context.stamp(b"{}")  # a stamp needs the trace of a message being handled
    with pytest.raises(TypeError):
        context.record(1, "ok")


def test_an_extension_with_another_traced_message_layout_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CAXTON_ACCEL", raising=False)
    if accel.load() is None:  # not built: only where no compiler is (see the first test)
        assert not _compiler_present()
        return
    monkeypatch.setattr(wire_trace, "TRACE_LAYOUT", (b'{"tp":"00-', 10, 42, 59, 64))
    assert accel.load() is None  # the ctypes path and the Python TraceContext instead
    assert "traced-message layout differs" in caplog.text


# -- the host-function adapters: a real wasm caller, both adapters -----------------------------

CALLER = """
(module
  (import "t" "f" (func $f (param i32 i64) (result i32)))
  (func (export "run") (param i32 i64) (result i32)
    (call $f (local.get 0) (local.get 1))))
"""
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()


def _call_through(flavour: str, fn: Callable[..., int | None], a: int, b: int) -> int:
    """Call ``fn`` from wasm through the given adapter; what the guest got back."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    if flavour == "c":
        assert accel.ACCEL is not None
        keep: Any = accel.ACCEL.HostFunction(fn, "iI", True, -9)
        callback = ffi.wasmtime_func_unchecked_callback_t(accel.ACCEL.trampoline_address())
        env = ctypes.c_void_p(keep.env())
    else:
        keep = host.ctypes_callback(fn, "iI", True, -9)
        callback = ctypes.cast(keep, ffi.wasmtime_func_unchecked_callback_t)
        env = None
    ty = wasmtime.FuncType(
        [wasmtime.ValType.i32(), wasmtime.ValType.i64()], [wasmtime.ValType.i32()]
    )
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), b"t", 1, b"f", 1, ty.ptr(), callback, env, _NO_FINALIZER
    )
    assert not error
    store = wasmtime.Store(engine)
    instance = linker.instantiate(store, wasmtime.Module(engine, CALLER))
    run = instance.exports(store)["run"]
    assert isinstance(run, wasmtime.Func)
    result = run(store, a, b)
    assert isinstance(result, int)
    return result


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_host_functions_get_i32_unsigned_and_i64_signed(flavour: str) -> None:
    seen: list[tuple[int, int]] = []

    def fn(a: int, b: int) -> int:
        seen.append((a, b))
        return -4

    assert _call_through(flavour, fn, -1, -(2**40)) == -4
    assert seen == [(0xFFFFFFFF, -(2**40))]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("result", [None, 2**40, "7"])
def test_a_result_that_is_not_an_i32_becomes_the_error_code(flavour: str, result: Any) -> None:
    assert _call_through(flavour, lambda a, b: result, 1, 2) == -9


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_exception_in_a_host_function_never_reaches_wasm(
    flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)  # the C adapter's report
    monkeypatch.setattr(host._log, "exception", lambda *a, **k: reported.append(a))  # ctypes'

    def fn(a: int, b: int) -> int:
        raise ZeroDivisionError("boom")

    assert _call_through(flavour, fn, 1, 2) == -9
    assert len(reported) == 1
