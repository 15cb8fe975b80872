"""Snapshots of an agent's linear memory, so a reactor agent can resume where it stopped.

Linear memory is mostly zero pages, so a snapshot keeps only the 64 KiB pages that are not all
zero, compressed with zlib level 1 (``packed``: a magic byte, the memory size, a bitmap of the
kept pages, then one zlib stream of those pages). Finding them is one ``memcmp`` per page, so
the cost follows the memory in use, not the memory size (zlib over a whole 1 MiB image took
~2.3 ms here; over the one or two pages a small agent uses, a tenth of that). The packing runs
in the caller's thread, never in the writer's. Snapshots of the first format (plain zlib of the
whole memory) still load.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from concurrent.futures import Future
from typing import Any, NamedTuple

from caxton.errors import StorageError
from caxton.storage._connection import Connection
from caxton.storage._core import StorageCore

__all__ = ["PAGE", "SnapshotsRepository", "SparseMemory", "pack", "unpack", "unpack_sparse"]

#: zlib level for the kept pages: 1 is several times faster than the default, nearly as small.
COMPRESSION_LEVEL = 1
#: The WebAssembly page size: the unit of sparse packing.
PAGE = 65536
_ZERO_PAGE = bytes(PAGE)
#: First byte of a sparse snapshot (zlib streams, the old format, start with 0x78).
_SPARSE = 0x53


class SparseMemory(NamedTuple):
    """A linear memory as its size and its non-zero 64 KiB pages (page index -> bytes)."""

    size: int
    pages: dict[int, bytes]

    def to_bytes(self) -> bytes:
        """The whole memory, zero pages included."""
        memory = bytearray(self.size)
        for index, page in self.pages.items():
            memory[index * PAGE : index * PAGE + len(page)] = page
        return bytes(memory)


def nonzero_pages(memory: bytes) -> dict[int, bytes]:
    """The pages of ``memory`` that are not all zero, by index."""
    kept: dict[int, bytes] = {}
    for index in range((len(memory) + PAGE - 1) // PAGE):
        # bytes == bytes is a memcmp (a memoryview comparison would go byte by byte).
        page = memory[index * PAGE : (index + 1) * PAGE]
        if page != (_ZERO_PAGE if len(page) == PAGE else bytes(len(page))):
            kept[index] = page
    return kept


def pack(memory: bytes | SparseMemory) -> bytes:
    """``memory`` as a sparse snapshot: only its non-zero pages are kept."""
    if not isinstance(memory, SparseMemory):
        memory = SparseMemory(len(memory), nonzero_pages(memory))
    size = memory.size
    pages = (size + PAGE - 1) // PAGE
    bitmap = bytearray((pages + 7) // 8)
    order = sorted(memory.pages)
    for index in order:
        if index >= pages:
            raise ValueError(f"page {index} is outside a memory of {size} bytes")
        bitmap[index >> 3] |= 1 << (index & 7)
    header = bytes([_SPARSE]) + size.to_bytes(8, "little") + bytes(bitmap)
    kept = b"".join(memory.pages[index] for index in order)
    return header + zlib.compress(kept, COMPRESSION_LEVEL)


def unpack_sparse(packed: bytes) -> SparseMemory:
    """The memory a `pack` result (or an old zlib snapshot) stands for, page by page."""
    if not packed or packed[0] != _SPARSE:
        memory = zlib.decompress(packed)
        return SparseMemory(len(memory), nonzero_pages(memory))
    size = int.from_bytes(packed[1:9], "little")
    pages = (size + PAGE - 1) // PAGE
    bitmap = packed[9 : 9 + (pages + 7) // 8]
    kept = zlib.decompress(packed[9 + len(bitmap) :])
    found: dict[int, bytes] = {}
    offset = 0
    for index in range(pages):
        if bitmap[index >> 3] & (1 << (index & 7)):
            length = min(PAGE, size - index * PAGE)
            found[index] = kept[offset : offset + length]
            if len(found[index]) != length:
                raise ValueError(f"page {index} is cut short")
            offset += length
    if offset != len(kept):
        raise ValueError(f"{len(kept) - offset} bytes left over after the last page")
    return SparseMemory(size, found)


def unpack(packed: bytes) -> bytes:
    """The whole memory a `pack` result (or an old zlib snapshot) stands for."""
    return unpack_sparse(packed).to_bytes()


def _save(conn: Connection, name: str, packed: bytes, meta: str, taken_at: float) -> None:
    conn.execute(
        "INSERT INTO snapshots(name, memory, meta, taken_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET memory = excluded.memory, meta = excluded.meta,"
        " taken_at = excluded.taken_at",
        (name, packed, meta, taken_at),
    )


def _load(conn: Connection, name: str) -> tuple[bytes, str] | None:
    row = conn.fetch_one("SELECT memory, meta FROM snapshots WHERE name = ?", (name,))
    return None if row is None else (bytes(row[0]), str(row[1]))


def _delete(conn: Connection, name: str) -> bool:
    return conn.execute("DELETE FROM snapshots WHERE name = ?", (name,)) > 0


def _unpack_sparse(
    name: str, found: tuple[bytes, str] | None
) -> tuple[SparseMemory, dict[str, Any]] | None:
    if found is None:
        return None
    packed, meta = found
    try:
        memory = unpack_sparse(packed)
    except (zlib.error, ValueError, IndexError) as exc:
        raise StorageError(f"the memory snapshot of {name!r} is corrupt: {exc}") from exc
    decoded: dict[str, Any] = json.loads(meta)
    return memory, decoded


def _unpack(name: str, found: tuple[bytes, str] | None) -> tuple[bytes, dict[str, Any]] | None:
    sparse = _unpack_sparse(name, found)
    return None if sparse is None else (sparse[0].to_bytes(), sparse[1])


class SnapshotsRepository:
    """One memory snapshot per agent (``storage.snapshots``); saving replaces the previous one."""

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    def save_sync(self, name: str, memory: bytes | SparseMemory, meta: dict[str, Any]) -> None:
        """Pack and store ``memory`` with ``meta`` (JSON); blocks until committed.

        Raises `StorageError` if no agent has that name.
        """
        packed = pack(memory)
        text = json.dumps(meta, sort_keys=True)
        now = time.time()
        self._store.write_sync(lambda c: _save(c, name, packed, text, now))

    async def save(self, name: str, memory: bytes | SparseMemory, meta: dict[str, Any]) -> None:
        """`save_sync` for the event loop (packing runs in a worker thread)."""
        packed = await asyncio.to_thread(pack, memory)
        text = json.dumps(meta, sort_keys=True)
        now = time.time()
        await self._store.write(lambda c: _save(c, name, packed, text, now))

    def save_nowait(
        self, name: str, memory: bytes | SparseMemory, meta: dict[str, Any]
    ) -> Future[None]:
        """Pack ``memory`` now (caller's thread) and queue the write; returns its future.

        Writes from one thread commit in submission order, so a later delete or save of the
        same agent from that thread can never be overtaken.
        """
        packed = pack(memory)
        text = json.dumps(meta, sort_keys=True)
        now = time.time()
        return self._store.write_nowait(lambda c: _save(c, name, packed, text, now))

    def delete_nowait(self, name: str) -> Future[bool]:
        """Queue the deletion of the agent's snapshot; the future says whether there was one."""
        return self._store.write_nowait(lambda c: _delete(c, name))

    def load_sync(self, name: str) -> tuple[bytes, dict[str, Any]] | None:
        """``(memory, meta)`` of the agent's snapshot, or None if it has none."""
        return _unpack(name, self._store.read_sync(lambda c: _load(c, name)))

    def load_sparse_sync(self, name: str) -> tuple[SparseMemory, dict[str, Any]] | None:
        """`load_sync` with the memory kept page by page (no zero pages built)."""
        return _unpack_sparse(name, self._store.read_sync(lambda c: _load(c, name)))

    async def load(self, name: str) -> tuple[bytes, dict[str, Any]] | None:
        """`load_sync` for the event loop."""
        found = await self._store.read(lambda c: _load(c, name))
        return await asyncio.to_thread(_unpack, name, found)

    def delete_sync(self, name: str) -> bool:
        """Delete the agent's snapshot; return whether there was one."""
        return self._store.write_sync(lambda c: _delete(c, name))

    async def delete(self, name: str) -> bool:
        """`delete_sync` for the event loop."""
        return await self._store.write(lambda c: _delete(c, name))
