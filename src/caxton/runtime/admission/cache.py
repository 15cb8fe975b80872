"""Compiled agent modules, cached in memory and on disk.

Compiling a module is the slow part of a deploy (tens of milliseconds for a small agent, seconds
for a large one); deserializing a compiled artifact is about a millisecond, and reusing a `Module`
already in memory is free. So `ModuleCache.load` looks in three places, fastest first:

1. **memory** — every `Module` still referenced anywhere in the process (weakly held, so 10,000
   agents deployed from the same bytes share one `Module` and nothing is kept alive for agents
   that are gone), plus the most recently used ones held strongly so a quick undeploy/redeploy
   does not recompile;
2. **disk** — ``<directory>/<sha256>-<variant>.cwasm`` written by `Module.serialize` and loaded
   with `Module.deserialize_file`, which maps the file instead of copying it;
3. **compile** — and then fill both. What is compiled is the module with its mutable globals
   exported (`caxton.runtime.admission.globals`), so snapshots can keep them.

The key is the SHA-256 of the bytes plus a *variant*: a hash of the installed wasmtime version
and the caller's ``settings_key`` (the engine settings that change the generated code: fuel,
epochs, stack limits, memory reservation, ...). Different variants never share files.

Trust: wasmtime checks that an artifact was produced by the same wasmtime version and a compatible
engine configuration, but it does not checksum the machine code inside (a file with zeroed bytes
in its header deserializes "fine"). So each file ends with a 40-byte trailer, a magic and the
SHA-256 of the artifact, verified before wasmtime maps the file (~0.1 ms for an 80 KB artifact).
The checksum catches damage, not attackers: the directory must be private to Caxton (it is
created ``0700``), because whoever can write it can run native code in the node. Files are
written to a temporary name and renamed into place, never modified in place (truncating a mapped
file would crash the process). A file that fails the checksum or that wasmtime refuses (another
version or engine configuration) is deleted and the module recompiled; the user never sees an
error for it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import wasmtime

from caxton.errors import InvalidWasm
from caxton.runtime.admission.globals import plan_globals
from caxton.runtime.admission.validate import ModuleInfo, check_binary, check_bytes, inspect_module

__all__ = [
    "CacheSource",
    "CachedModule",
    "ModuleCache",
    "ModuleCacheStatistics",
    "validate_and_load",
]

logger = logging.getLogger("caxton.runtime.cache")  # its name before the move to admission/

CacheSource = Literal["memory", "disk", "compiled"]

_SUFFIX = ".cwasm"
_FORMAT = b"caxton-module-cache-2"  # bump to orphan every existing file (2: globals exported)
# Every file ends with this magic and the SHA-256 of the wasmtime artifact before it.
_TRAILER_MAGIC = b"CXSUM\x001\x00"
_TRAILER = _TRAILER_MAGIC + bytes(32)
_MAX_INFOS = 1024  # remembered ModuleInfo results (a few hundred bytes each)


@dataclass(frozen=True, slots=True)
class CachedModule:
    """One `ModuleCache.load` result."""

    #: The compiled module; the same object for every load of the same bytes while it is alive.
    module: wasmtime.Module
    #: SHA-256 of the module bytes, lowercase hex.
    sha256: str
    #: Where it came from this time.
    from_cache: CacheSource
    #: Seconds this load spent producing the module: compiling, or deserializing from disk;
    #: 0.0 for a memory hit.
    compile_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleCacheStatistics:
    """Counters of a `ModuleCache` since it was created."""

    #: Loads answered from memory (including loads that waited for a concurrent compile).
    memory_hits: int
    #: Loads answered by deserializing a file.
    disk_hits: int
    #: Loads that compiled (successful compilations only).
    compiles: int
    #: Total seconds spent compiling.
    compile_seconds_total: float
    #: Total seconds spent deserializing files.
    disk_load_seconds_total: float
    #: Cache files deleted because wasmtime refused them (corrupt or incompatible).
    disk_discarded: int
    #: Cache files that could not be written (the module still loaded; see the log).
    disk_write_failures: int
    #: Modules currently reachable from the memory cache.
    entries: int


class ModuleCache:
    """Compiled modules for one `wasmtime.Engine`, keyed by content and engine settings.

    Thread-safe: concurrent loads of the same bytes compile once; the others wait for it and
    count as memory hits. Loads of different bytes compile in parallel.

    Args:
        engine: the engine every module is compiled for (one per process).
        directory: where compiled artifacts are kept; None for memory only. Created if missing.
        settings_key: identifies the engine settings that affect generated code; callers pass a
            stable string (e.g. a hash of fuel/epoch/stack/memory-reservation flags).
        keep_recent: how many recently loaded modules stay in memory when nothing else uses them.
    """

    def __init__(
        self,
        engine: wasmtime.Engine,
        directory: Path | None,
        *,
        settings_key: str,
        keep_recent: int = 64,
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._keep_recent = keep_recent
        version = importlib.metadata.version("wasmtime")
        variant = hashlib.sha256(b"\0".join([_FORMAT, version.encode(), settings_key.encode()]))
        self._variant = variant.hexdigest()[:16]
        self._lock = threading.Lock()
        self._live: weakref.WeakValueDictionary[str, wasmtime.Module] = (
            weakref.WeakValueDictionary()
        )
        self._recent: collections.OrderedDict[str, wasmtime.Module] = collections.OrderedDict()
        self._inflight: dict[str, Future[wasmtime.Module]] = {}
        self._infos: collections.OrderedDict[tuple[str, int], ModuleInfo] = (
            collections.OrderedDict()
        )
        self._memory_hits = self._disk_hits = self._compiles = 0
        self._disk_discarded = self._disk_write_failures = 0
        self._compile_seconds = self._disk_seconds = 0.0
        if directory is not None:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def load(self, wasm: bytes) -> CachedModule:
        """Return the compiled module for ``wasm`` from memory, disk, or by compiling it.

        Raises:
            InvalidWasm: the bytes are not a linkable module (see `check_binary`) or wasmtime
                failed to compile them (``details["reason"] == "compile_error"``).
        """
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            module = self._remember(digest)
            if module is not None:
                self._memory_hits += 1
                return CachedModule(module, digest, "memory", 0.0)
            future = self._inflight.get(digest)
            owner = future is None
            if future is None:
                future = self._inflight[digest] = Future()
        if not owner:
            module = future.result()  # re-raises the owner's InvalidWasm
            with self._lock:
                self._memory_hits += 1
            return CachedModule(module, digest, "memory", 0.0)
        try:
            result = self._load_uncached(wasm, digest)
        except BaseException as exc:
            with self._lock:
                del self._inflight[digest]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._inflight[digest]
            self._remember(digest, result.module)
        future.set_result(result.module)
        return result

    def _load_uncached(self, wasm: bytes, digest: str) -> CachedModule:
        """Disk, then compile (and write the file)."""
        check_binary(wasm)  # never hand wasmtime bytes that could abort the process
        path = self._path(digest)
        if path is not None:
            started = time.perf_counter()
            module = self._read(path)
            if module is not None:
                seconds = time.perf_counter() - started
                with self._lock:
                    self._disk_hits += 1
                    self._disk_seconds += seconds
                return CachedModule(module, digest, "disk", seconds)
        started = time.perf_counter()
        module = _compile(self._engine, plan_globals(wasm).wasm)
        seconds = time.perf_counter() - started
        with self._lock:
            self._compiles += 1
            self._compile_seconds += seconds
        if path is not None:
            self._write(path, module)
        return CachedModule(module, digest, "compiled", seconds)

    def _remember(
        self, digest: str, module: wasmtime.Module | None = None
    ) -> wasmtime.Module | None:
        """Look up (or store) a module in memory and mark it recently used; lock held."""
        if module is None:
            module = self._live.get(digest)
            if module is None:
                return None
        else:
            self._live[digest] = module
        self._recent[digest] = module
        self._recent.move_to_end(digest)
        while len(self._recent) > self._keep_recent:
            self._recent.popitem(last=False)
        return module

    def _path(self, digest: str) -> Path | None:
        if self._directory is None:
            return None
        return self._directory / f"{digest}-{self._variant}{_SUFFIX}"

    def _read(self, path: Path) -> wasmtime.Module | None:
        """Verify and deserialize a cache file; None if absent; delete it if unusable."""
        try:
            contents = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._discard(path, str(exc))
            return None
        payload, trailer = contents[: -len(_TRAILER)], contents[-len(_TRAILER) :]
        expected = _TRAILER_MAGIC + hashlib.sha256(payload).digest()
        if len(contents) < len(_TRAILER) or trailer != expected:
            self._discard(path, "checksum mismatch")
            return None
        try:
            # Maps the file; wasmtime ignores our trailer after its own artifact.
            return wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError as exc:  # another wasmtime version or engine config
            self._discard(path, _first_line(exc))
            return None

    def _discard(self, path: Path, why: str) -> None:
        logger.warning("discarding unusable module cache file %s: %s", path, why)
        with self._lock:
            self._disk_discarded += 1
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not delete %s: %s", path, exc)

    def _write(self, path: Path, module: wasmtime.Module) -> None:
        """Write artifact + checksum trailer atomically (temporary file, fsync, rename).

        Failures are logged and counted, never raised: the module is loaded either way.
        """
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            data = bytes(module.serialize())
            with open(tmp, "wb") as file:
                file.write(data)
                file.write(_TRAILER_MAGIC + hashlib.sha256(data).digest())
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except (OSError, wasmtime.WasmtimeError) as exc:
            logger.warning("could not write module cache file %s: %s", path, exc)
            with self._lock:
                self._disk_write_failures += 1
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def inspect(self, loaded: CachedModule, wasm: bytes, *, memory_limit: int) -> ModuleInfo:
        """`inspect_module` and the module's globals (`plan_globals`), remembered per module
        and memory limit (refusals are not kept). ``wasm``: the bytes ``loaded`` came from."""
        key = (loaded.sha256, memory_limit)
        with self._lock:
            info = self._infos.get(key)
        if info is None:
            info = inspect_module(loaded.module, memory_limit=memory_limit)
            plan = plan_globals(wasm)
            info = dataclasses.replace(
                info,
                exports=info.exports - plan.added,
                saved_globals=plan.saved,
                unsaved_state=plan.unsaved,
            )
        with self._lock:
            self._infos[key] = info
            self._infos.move_to_end(key)
            while len(self._infos) > _MAX_INFOS:
                self._infos.popitem(last=False)
        return info

    def statistics(self) -> ModuleCacheStatistics:
        """A snapshot of the counters."""
        with self._lock:
            return ModuleCacheStatistics(
                memory_hits=self._memory_hits,
                disk_hits=self._disk_hits,
                compiles=self._compiles,
                compile_seconds_total=self._compile_seconds,
                disk_load_seconds_total=self._disk_seconds,
                disk_discarded=self._disk_discarded,
                disk_write_failures=self._disk_write_failures,
                entries=len(self._live),
            )

    def clear(self) -> None:
        """Forget every module in memory and delete every cache file in the directory.

        Modules already handed out stay valid (a mapped file survives its deletion).
        """
        with self._lock:
            self._live = weakref.WeakValueDictionary()
            self._recent.clear()
            self._infos.clear()
        if self._directory is None:
            return
        for path in self._directory.iterdir():
            if path.name.endswith(_SUFFIX) or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def _compile(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Compile; wasmtime's refusal becomes `InvalidWasm` with its first lines."""
    try:
        # Safe only after `check_binary`: wasmtime-py parses `bytes` not starting with NUL as WAT.
        return wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        text = str(exc)
        lines = [line.strip() for line in text.splitlines()]
        lines = [line.split(": ", 1)[-1] if line[:1].isdigit() else line for line in lines]
        summary = ": ".join(line for line in lines if line and line != "Caused by:")[:500]
        raise InvalidWasm(
            f"the module failed to compile: {summary}",
            details={"reason": "compile_error", "wasmtime": text},
        ) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def validate_and_load(
    cache: ModuleCache, wasm: bytes, *, max_size: int, memory_limit: int
) -> tuple[CachedModule, ModuleInfo]:
    """Everything a deploy needs: `check_bytes`, then `ModuleCache.load`, then `inspect_module`.

    Deploying many agents from the same bytes is cheap (~0.03 ms after the first): a memory hit
    skips the byte checks its first load already passed (`load` runs `check_binary` on every
    miss), and the `ModuleInfo` of a module and memory limit is computed once.

    Raises:
        ModuleTooLarge: above ``max_size``.
        InvalidWasm: any other reason the module cannot be an agent (the message says which).
    """
    if not wasm or len(wasm) > max_size:
        check_bytes(wasm, max_size=max_size)  # raises the right error
    loaded = cache.load(wasm)  # check_binary before anything is compiled or deserialized
    return loaded, cache.inspect(loaded, wasm, memory_limit=memory_limit)
