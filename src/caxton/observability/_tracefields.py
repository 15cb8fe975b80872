"""Log lines written while a traced message is handled carry its trace (docs/observability.md).

`TraceFields` is a filter on Caxton's log handler: on the thread that logs, while a worker
handles a message of a sampled trace (`caxton.runtime.tracing.current`), it adds ``trace_id``
and ``span_id`` (of the ``caxton.handle`` span), ``agent`` and ``conversation_id`` to the record,
so the JSON (and text) line joins the trace. Fields the caller set itself are kept.
"""

from __future__ import annotations

import logging

from caxton.runtime.tracing import current
from caxton.wire.header import header_of

__all__ = ["TraceFields"]


class TraceFields(logging.Filter):
    """Adds the handled message's trace to records (see the module); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = getattr(current, "handling", None)
        if context is None or not context.active:
            return True
        fields = record.__dict__
        fields.setdefault("trace_id", context.trace_id.decode())
        fields.setdefault("span_id", f"{context.span_id:016x}")
        fields.setdefault("agent", context.agent)
        if "conversation_id" not in fields:
            conversation = header_of(context.message).conversation_id
            if isinstance(conversation, str):
                fields["conversation_id"] = conversation
        return True
