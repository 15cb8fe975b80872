"""ABI v1 constants: the contract between Caxton and agent modules (docs/agents.md, ABI v1).

WARNING: ONLY APPEND TO THESE LISTS. The names, signatures and numeric codes are part of the
guest ABI; agents compiled against version 1 rely on them forever. A new ABI version adds
entries and bumps `ABI_VERSION`; it never changes the meaning of an existing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import wasmtime

from caxton.runtime.admission.wasi import Signature

__all__ = [
    "ABI_VERSION",
    "ERR_BACKPRESSURE",
    "ERR_MALFORMED",
    "ERR_NOT_PERMITTED",
    "ERR_OVER_BUDGET",
    "ERR_QUOTA",
    "ERR_STORAGE",
    "ERR_TOO_LARGE",
    "HOST_IMPORTS",
    "HOST_MODULE",
    "HOST_SIGNATURES",
    "KV_ABSENT",
    "OK",
]

#: Version 1: send, log, kv_get, kv_set, kv_delete, schedule; reactor and command agents.
ABI_VERSION: Final = 1

HOST_MODULE: Final = "caxton"

OK: Final = 0
ERR_MALFORMED: Final = -1  # not a JSON object, no receiver, or a pointer range outside memory
ERR_TOO_LARGE: Final = -2  # above max_message_size (or the kv value limit)
ERR_NOT_PERMITTED: Final = -3  # the agent may not do this
ERR_BACKPRESSURE: Final = -4  # the receiver's mailbox is full
#: Over the agent's send budget (`runtime.max_sends_per_message`, or
#: `runtime.max_external_sends_per_second`); nothing was kept. Not -5/-6: the C SDK's JSON
#: helpers return those (CAXTON_JSON_NOT_FOUND, CAXTON_JSON_WRONG_TYPE).
ERR_OVER_BUDGET: Final = -7
#: Over the agent's quota: key/value keys or bytes (`kv_set`), pending timers (`schedule`).
ERR_QUOTA: Final = -8
ERR_STORAGE: Final = -9  # kv_set / kv_delete / schedule: the store cannot write (disk full)
KV_ABSENT: Final = -1  # kv_get / kv_delete: no such key

_I, _L = "i32", "i64"

#: THE table of the host imports of module "caxton": name -> signature (read-only). Deploys
#: check a module's imports against it (`caxton.runtime.admission.validate`), and the host
#: functions are defined from it (`HOST_SIGNATURES`, `caxton.runtime.sandbox.host`).
HOST_IMPORTS: Final[Mapping[str, Signature]] = MappingProxyType(
    {
        "send": Signature((_I, _I), (_I,)),
        "log": Signature((_I, _I, _I), ()),
        "kv_get": Signature((_I, _I, _I, _I), (_I,)),
        "kv_set": Signature((_I, _I, _I, _I), (_I,)),
        "kv_delete": Signature((_I, _I), (_I,)),
        "schedule": Signature((_L, _I, _I), (_I,)),
    }
)

_VALTYPES: Final = {_I: wasmtime.ValType.i32(), _L: wasmtime.ValType.i64()}

#: `HOST_IMPORTS` as wasmtime value types: name -> (params, results).
HOST_SIGNATURES: Final[dict[str, tuple[list[wasmtime.ValType], list[wasmtime.ValType]]]] = {
    name: ([_VALTYPES[p] for p in sig.params], [_VALTYPES[r] for r in sig.results])
    for name, sig in HOST_IMPORTS.items()
}
