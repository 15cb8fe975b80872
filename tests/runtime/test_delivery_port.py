"""The runtime's port to delivery (`caxton.runtime.delivery`): what crosses it, and where.

The cluster will plug in behind this port, so its contract is checked with a plain
implementation here, not only through `Messaging`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sized
from typing import Any

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime
from caxton.runtime.delivery import MessageJournal, Offer, Origin
from tests.support import message, wat

from .conftest import Recorder


class ListJournal:
    """A `MessageJournal` that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []
        self.flushes = 0

    def sent(self, conversation: str | None, data: bytes, receiver: str | None) -> None:
        self.entries.append((conversation, data, receiver))

    def sent_remote(self, conversation: str | None, data: bytes, receiver: str, node: str) -> None:
        self.entries.append((conversation, data, receiver, node))

    def handled(self, receiver: str, data: bytes) -> None:
        self.entries.append((receiver, data))

    def retract(self, data: bytes) -> None:
        self.entries.append(("retract", data))

    def flush(self, *, block: bool = True, defer: bool = False) -> object:
        self.flushes += 1
        return None

    def hot_path(self) -> tuple[Callable[[tuple[Any, ...]], None], Sized, int]:
        return self.entries.append, self.entries, 1 << 30


class PortRecorder:
    """A `Delivery`: its journal, and every message handed to `not_local` with its thread."""

    def __init__(self) -> None:
        self._journal = ListJournal()
        self.not_local_calls: asyncio.Queue[tuple[str, dict[str, Any], Origin, int]] = (
            asyncio.Queue()
        )

    @property
    def journal(self) -> MessageJournal | None:
        return self._journal

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        self.not_local_calls.put_nowait((receiver, json.loads(data), origin, threading.get_ident()))


async def test_a_reply_to_a_client_crosses_the_port_once_on_the_loop_thread(
    config: RuntimeConfig, engine: Engine
) -> None:
    port = PortRecorder()
    async with Runtime(config, engine=engine, delivery=port, events=Recorder()) as runtime:
        compiled = await asyncio.to_thread(engine.compile, wat("echo"))
        await runtime.start_agent(AgentSpec(name="echo"), compiled)
        sent = message("echo", {"x": 1}, conversation_id="conv-1")
        runtime.deliver_nowait("echo", sent)
        receiver, body, origin, thread = await asyncio.wait_for(port.not_local_calls.get(), 5)
        assert (receiver, origin) == ("client", Origin.AGENT)
        assert (body["sender"], body["conversation_id"]) == ("echo", "conv-1")
        assert thread == threading.get_ident()  # handed over in the worker's event batch
        await runtime.flush_journal()
        entries = port._journal.entries
        # The reply is recorded as history only (no local receiver), the handled mark after it.
        assert (entries[0][0], entries[0][2]) == ("conv-1", None)
        assert entries[1] == ("echo", sent)
        assert port._journal.flushes >= 1


async def test_a_due_timer_enters_through_send_from_loop(
    config: RuntimeConfig, engine: Engine
) -> None:
    port = PortRecorder()
    async with Runtime(config, engine=engine, delivery=port, events=Recorder()) as runtime:
        late = message("nobody", {"t": 1}, conversation_id="conv-2")
        runtime.schedule(0.0, "nobody", late)
        receiver, body, origin, _ = await asyncio.wait_for(port.not_local_calls.get(), 5)
        assert (receiver, body["content"], origin) == ("nobody", {"t": 1}, Origin.LOOP)
        # Recorded as sent (conversation read from the envelope), then handled: not local.
        assert port._journal.entries == [("conv-2", late, "nobody"), ("nobody", late)]


async def test_enqueue_local_says_closed_for_a_name_that_is_no_agent(
    config: RuntimeConfig, engine: Engine
) -> None:
    async with Runtime(config, engine=engine) as runtime:
        assert runtime.enqueue_local("nobody", b"{}") is Offer.CLOSED
