"""The agent service's collaborators are handed over at construction, with typed interfaces.

Checked on the source of ``caxton.agents`` (every module, whatever a later split calls them):
no ``isinstance`` switch on a collaborator (only on plain values being validated), no private
attribute of another object read or called (``service._compile``), and no attribute of
another object set after construction (``events.on_dirty = ...``) except the service's own
per-agent records (``entry``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import caxton.agents

PACKAGE = Path(caxton.agents.__file__).parent
#: What ``isinstance`` may test against in caxton.agents: plain values from requests.
PLAIN = frozenset({"str", "int", "bool", "float", "bytes", "dict", "list", "Mapping"})
#: Names of objects whose attributes the package may set: itself, and its own records.
OWN = frozenset({"self", "cls", "entry"})


def _nodes() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            yield f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}", node


def _set_attributes(target: ast.expr) -> Iterator[ast.Attribute]:
    """The attributes an assignment to ``target`` sets (or whose container it changes)."""
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _set_attributes(element)
    elif isinstance(target, ast.Starred | ast.Subscript):
        yield from _set_attributes(target.value)
    elif isinstance(target, ast.Attribute):
        yield target


def _names(node: ast.expr) -> set[str]:
    return {
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Name | ast.Attribute)
    }


def test_no_isinstance_switch_on_collaborators() -> None:
    found = [
        f"{where}: {ast.unparse(node)}"
        for where, node in _nodes()
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and not _names(node.args[1]) <= PLAIN
    ]
    assert found == []


def test_no_private_attribute_of_another_object() -> None:
    found = [
        f"{where}: {ast.unparse(node)}"
        for where, node in _nodes()
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert found == []


def test_no_attribute_of_a_collaborator_set_after_construction() -> None:
    found = []
    for where, node in _nodes():
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for attribute in _set_attributes(target):
                    owner = attribute.value
                    # self.x = ... and entry.x = ...; never runtime.x, self.runtime.x, ...
                    if not (isinstance(owner, ast.Name) and owner.id in OWN):
                        found.append(f"{where}: {ast.unparse(attribute)}")
    assert found == []
