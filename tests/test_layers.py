"""The package layers: the core never imports a leaf, and the runtime never imports messaging.

Every ``import`` in ``src/caxton`` counts, wherever it is (module level, inside a function, or
under ``TYPE_CHECKING``): a type-only import is still a dependency of the code that reads it.
`KNOWN` lists the violations not fixed yet; it may only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import caxton

SOURCE = Path(caxton.__file__).parent
#: Packages of the core: what a node is made of, without HTTP, CLI or metrics export.
CORE = frozenset({"wire", "runtime", "messaging", "storage", "agents", "cluster"})
#: The leaves: they use the core, never the other way round.
LEAVES = frozenset({"api", "cli", "observability", "server"})
#: (importing package, imported package) pairs forbidden besides core -> leaf: the runtime
#: sits below messaging, and the wire format below both (and below storage and agents); the
#: cluster sits above them all (it plugs into messaging as its `Remote`, and the registry
#: listens to the agent service's `AgentChanges`): a single node never loads it.
FORBIDDEN = frozenset(
    {("runtime", "messaging")}
    | {("wire", above) for above in CORE - {"wire"}}
    | {(below, "cluster") for below in ("runtime", "messaging", "storage", "agents")}
)
#: Violations not fixed yet, as (importing module, imported module).
KNOWN: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> tuple[str, str]:
    """The dotted name of the module at ``path`` and of the package it is in."""
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(path: Path) -> Iterator[tuple[str, str]]:
    """(module, imported module) for every import statement in the file."""
    module, package = _module_name(path)
    return _imports_in(path.read_text(encoding="utf-8"), module, package)


def _imports_in(text: str, module: str, package: str) -> Iterator[tuple[str, str]]:
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "caxton":  # ``from caxton import api`` imports the package
                for alias in node.names:
                    yield module, f"caxton.{alias.name}"
            else:
                yield module, target


def _top(module: str) -> str | None:
    """The first-level package of a ``caxton.*`` module (None for anything else)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "caxton" else None


def _violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in SOURCE.rglob("*.py"):
        for module, target in _imports(path):
            src, dst = _top(module), _top(target)
            if src is None or dst is None or src == dst:
                continue
            if (src in CORE and dst in LEAVES) or (src, dst) in FORBIDDEN:
                found.add((module, target))
    return found


def test_the_core_imports_no_leaf_and_the_runtime_no_messaging() -> None:
    new = _violations() - KNOWN
    assert not new, f"imports against the layers: {sorted(new)}"


def test_the_known_violations_are_all_still_there() -> None:
    """A fixed violation leaves `KNOWN` (the list shows exactly the work left)."""
    gone = KNOWN - _violations()
    assert not gone, f"no longer violated, remove from KNOWN: {sorted(gone)}"


def test_the_agent_service_may_not_import_the_cluster() -> None:
    found = set(
        _imports_in("from caxton.cluster import registry\n", "caxton.agents.x", "caxton.agents")
    )
    assert {(m, t) for m, t in found if (_top(m), _top(t)) in FORBIDDEN} == {
        ("caxton.agents.x", "caxton.cluster")
    }


def test_the_check_sees_relative_and_nested_imports() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..messaging import facade\n"
        "def f():\n    import caxton.api.app\n"
    )
    found = set(_imports_in(text, "caxton.runtime.x", "caxton.runtime"))
    assert ("caxton.runtime.x", "caxton.messaging") in found
    assert ("caxton.runtime.x", "caxton.api.app") in found


#: The runtime's subsystems (subpackages of `caxton.runtime`) and the ones each may not import:
#: admission and the sandbox sit below scheduling (a worker runs instances; an instance does not
#: know about workers), and admission does not reach into a running instance.
SUBSYSTEMS = frozenset({"admission", "sandbox", "scheduling"})
RUNTIME_BELOW = {"admission": {"sandbox", "scheduling"}, "sandbox": {"scheduling"}}


def _runtime_subsystem(module: str) -> str | None:
    """``sandbox`` for ``caxton.runtime.sandbox`` and its modules; None outside the subsystems."""
    parts = module.split(".")
    if len(parts) > 2 and parts[:2] == ["caxton", "runtime"] and parts[2] in SUBSYSTEMS:
        return parts[2]
    return None


def _subsystem_violations(imports: Iterator[tuple[str, str]]) -> set[tuple[str, str]]:
    found = set()
    for module, target in imports:
        src, dst = _runtime_subsystem(module), _runtime_subsystem(target)
        if src is not None and dst in RUNTIME_BELOW.get(src, set()):
            found.add((module, target))
    return found


def test_the_runtime_subsystems_are_layered() -> None:
    packages = {p.name for p in (SOURCE / "runtime").iterdir() if (p / "__init__.py").exists()}
    assert packages == SUBSYSTEMS
    found: set[tuple[str, str]] = set()
    for path in (SOURCE / "runtime").rglob("*.py"):
        found |= _subsystem_violations(_imports(path))
    assert not found, f"a runtime subsystem imports one above it: {sorted(found)}"


def test_the_subsystem_check_sees_package_imports() -> None:
    text = "from caxton.runtime.scheduling import executor\nfrom ..scheduling import timers\n"
    found = _subsystem_violations(
        _imports_in(text, "caxton.runtime.sandbox.host", "caxton.runtime.sandbox")
    )
    assert found == {("caxton.runtime.sandbox.host", "caxton.runtime.scheduling")}
