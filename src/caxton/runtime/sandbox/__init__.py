"""The sandbox: one agent's wasmtime instance and everything it can reach through its imports.

* `instance`: a `Store` with limits and WASI, the instantiated module, raw call handles;
* `host`: the ``caxton`` host functions of ABI v1; `kvstore`, `logs`, `logbudget`: what they
  touch (an agent's key/value store, its log ring and its log rate budget);
* `quota`, `wasi_quota`: ``temp_storage_limit`` and the WASI writes checked against it;
* `_ffi`, `accel` (and the C source `_accel.c`): raw wasmtime C-API calls for the hot path;
* `_errors`: where wasmtime's exceptions become Caxton's.
"""
