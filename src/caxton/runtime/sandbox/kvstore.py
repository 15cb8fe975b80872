"""One agent's key/value store as the host's ``kv_*`` imports see it: quota and bounded cache.

Nothing is loaded when an agent starts. `AgentKv.get` answers from a small LRU cache (at most
``cache_size`` bytes of keys and values, absent keys included) and reads the backend on a miss;
`set` and `delete` hand the change to the backend, which returns once it is committed (or
raises `StorageError`: then nothing is kept and the cache is unchanged), then update the cache.
So memory does not grow with what an agent stores, and a restart does not read an agent's map.

Quota: an agent may keep at most ``max_keys`` keys and ``max_bytes`` bytes of keys plus values.
The usage is counted by the backend the first time the agent writes (one query), then kept up
to date by every write; a write that would pass either limit returns `ERR_QUOTA` and keeps
nothing. Only the worker running the agent calls these methods (one at a time).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from caxton.runtime import abi

if TYPE_CHECKING:
    from caxton.runtime.ports import KvBackend

__all__ = ["AgentKv"]

#: Bytes a cache entry costs besides its key and value (counted so that many tiny or absent
#: keys cannot grow the cache past its size either).
ENTRY_OVERHEAD = 64


class AgentKv:
    """The key/value view of one agent (see the module docstring)."""

    __slots__ = (
        "_backend",
        "_cache",
        "_cache_size",
        "_cached",
        "_max_bytes",
        "_max_keys",
        "_usage",
        "name",
    )

    def __init__(
        self, name: str, backend: KvBackend, *, max_keys: int, max_bytes: int, cache_size: int
    ) -> None:
        self.name = name
        self._backend = backend
        self._max_keys = max_keys
        self._max_bytes = max_bytes
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, bytes | None] = OrderedDict()  # None: known absent
        self._cached = 0  # bytes the cache accounts for
        self._usage: list[int] | None = None  # [keys, bytes], counted at the first write

    @property
    def cached_bytes(self) -> int:
        """Bytes the cache holds now (keys, values and per-entry overhead)."""
        return self._cached

    def usage(self) -> tuple[int, int]:
        """(keys, bytes of keys and values) the agent stores."""
        keys, size = self._counted()
        return keys, size

    def _counted(self) -> list[int]:
        usage = self._usage
        if usage is None:
            usage = self._usage = list(self._backend.usage(self.name))
        return usage

    def get(self, key: bytes) -> bytes | None:
        """The stored value, or None."""
        cache = self._cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = self._backend.get(self.name, key)
        self._remember(key, value)
        return value

    def set(self, key: bytes, value: bytes) -> int:
        """Store ``key = value``: `abi.OK`, or `abi.ERR_QUOTA` (nothing kept).

        Raises `StorageError` when the store cannot write it (nothing kept).
        """
        old = self.get(key)
        usage = self._counted()
        keys = usage[0] + (old is None)
        size = usage[1] + len(key) + len(value) - (0 if old is None else len(key) + len(old))
        if (keys > self._max_keys and old is None) or (size > self._max_bytes and size > usage[1]):
            return abi.ERR_QUOTA
        self._backend.set(self.name, key, value)  # durable first: `StorageError`, nothing kept
        usage[0], usage[1] = keys, size
        self._remember(key, value)
        return abi.OK

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; whether it existed (`StorageError`: the store could not; it stays)."""
        old = self.get(key)
        if old is None:
            return False
        self._backend.delete(self.name, key)  # durable first: `StorageError`, nothing changed
        if self._usage is not None:
            self._usage[0] -= 1
            self._usage[1] -= len(key) + len(old)
        self._remember(key, None)
        return True

    def clear_cache(self) -> None:
        """Forget every cached entry (the agent hibernated or stopped)."""
        self._cache.clear()
        self._cached = 0

    def _remember(self, key: bytes, value: bytes | None) -> None:
        cache = self._cache
        if key in cache:
            self._cached -= _cost(key, cache.pop(key))
        cost = _cost(key, value)
        if cost > self._cache_size:
            return  # larger than the whole cache: read it from the backend each time
        cache[key] = value
        self._cached += cost
        while self._cached > self._cache_size:
            k, v = cache.popitem(last=False)
            self._cached -= _cost(k, v)


def _cost(key: bytes, value: bytes | None) -> int:
    return ENTRY_OVERHEAD + len(key) + (0 if value is None else len(value))
