"""The example agents that ship with Caxton, deployed by the quick start.

`caxton serve` on the embedded default deploys them (unless ``--no-examples``), so a new user
has agents to talk to at once. The built modules live in ``examples/agents/`` in the source tree
and are packaged as ``caxton/_examples`` in the wheel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXAMPLES", "Example", "examples_dir"]


@dataclass(frozen=True, slots=True)
class Example:
    """One example agent: the module file and what it does."""

    name: str
    file: str
    summary: str
    env: Mapping[str, str] = field(default_factory=dict)


#: Deployed in this order by the quick start.
EXAMPLES: tuple[Example, ...] = (
    Example("echo", "echo.wasm", "replies inform with the content it got"),
    Example("counter", "counter.wasm", "counts messages in memory and in kv"),
    Example("shout", "shout.wasm", "a plain WASI program: replies with the content upper-cased"),
    Example("pong", "pong.wasm", "answers every request with inform"),
    Example("ping", "ping.wasm", 'plays n request/inform rounds with a peer: {"op":"start"}'),
    Example("responder", "responder.wasm", "fipa-request participant: add, upper"),
    Example("requester", "requester.wasm", 'fipa-request initiator: {"op":"ask", ...}'),
    Example("bidder-a", "bidder.wasm", "contract-net bidder asking 30", {"PRICE": "30"}),
    Example("bidder-b", "bidder.wasm", "contract-net bidder asking 20", {"PRICE": "20"}),
    Example("bidder-c", "bidder.wasm", "contract-net bidder that refuses", {"REFUSE": "1"}),
    Example("manager", "manager.wasm", 'contract-net manager: {"op":"start", ...}'),
)


def examples_dir() -> Path | None:
    """Where the built example modules are, or None if this install has none."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_examples", here.parent.parent / "examples" / "agents"):
        if (candidate / EXAMPLES[0].file).is_file():
            return candidate
    return None
