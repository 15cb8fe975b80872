"""The messaging package's structure: composition, one routing rule, wiring at construction.

`Messaging` is a facade over collaborators it builds and wires in its constructor (no mixins,
no placeholder methods); only the routing module touches the runtime's mailboxes (the rule is
written once); no module sets an attribute on a collaborator it holds (``self.x.y = ...``):
collaborators get what they need when they are built.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import caxton.messaging
from caxton.messaging import Messaging
from caxton.messaging.routing import Router

PACKAGE = Path(caxton.messaging.__file__).parent
#: The runtime's methods that queue into local mailboxes or look agents up: the rule's steps.
MAILBOX_CALLS = frozenset(
    {
        "deliver",
        "deliver_nowait",
        "deliver_recovered",
        "enqueue_local",
        "has_agent",
        "agent_statistics",
        "send_from_loop",
    }
)


def _trees() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text("utf-8")) for path in PACKAGE.glob("*.py")}


def test_messaging_is_composed_not_mixed_in() -> None:
    assert Messaging.__bases__ == (object,)
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                assert not (isinstance(exc, ast.Name) and exc.id == "NotImplementedError"), name


def _mailbox_calls(tree: ast.Module) -> set[str]:
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in MAILBOX_CALLS
        and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "replies")
    }


def test_only_the_routing_module_touches_the_runtimes_mailboxes() -> None:
    routing = Path(inspect.getfile(Router)).name
    found = {name: calls for name, tree in _trees().items() if (calls := _mailbox_calls(tree))}
    assert set(found) == {routing}, found


def _late_wiring(tree: ast.Module) -> list[str]:
    """``self.collaborator.attribute = ...`` assignments."""
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Attribute)
                and isinstance(target.value.value, ast.Name)
                and target.value.value.id == "self"
            ):
                found.append(f"self.{target.value.attr}.{target.attr}")
    return found


def test_no_collaborator_is_wired_after_construction() -> None:
    found = {name: late for name, tree in _trees().items() if (late := _late_wiring(tree))}
    assert not found, found


def test_the_checks_see_what_they_forbid() -> None:
    text = (
        "class M(A, B):\n"
        "    def f(self):\n"
        "        raise NotImplementedError\n"
        "    def g(self):\n"
        "        self.journal.listener = self.h\n"
        "        self.runtime.deliver_nowait('a', b'')\n"
    )
    tree = ast.parse(text)
    assert _late_wiring(tree) == ["self.journal.listener"]
    assert _mailbox_calls(tree) == {"deliver_nowait"}
