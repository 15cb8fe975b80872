"""Module admission: whether uploaded bytes are an agent Caxton can run, and compiled modules.

* `validate`: the checks before and after compiling (ABI v1, docs/agents.md);
* `wasi`: the WASI preview 1 imports an agent may use, with their signatures;
* `cache`: compiled modules, cached in memory and on disk.
"""
