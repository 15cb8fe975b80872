"""How deeply a JSON document nests: the bound every message is held to, wherever it comes from.

A JSON document nested a thousand arrays deep is a few kilobytes, well inside any size limit,
but decoding it recursively exhausts the stack (`RecursionError`), and whatever decodes it later
(storage, the receiving agent, the events stream, an API client) would fail the same way. So a
message may nest at most `MAX_JSON_DEPTH` arrays and objects inside one another (its own object
counts as one): the API refuses deeper bodies with ``400`` (`caxton.api.json_body`) and an
agent's ``send`` or ``schedule`` with ``-1`` (`caxton.messaging.envelope`).

`too_deep` costs two byte counts for ordinary documents (fewer brackets than the limit cannot
nest deeper than it); only documents with many brackets are scanned (string literals removed,
then innermost pairs peeled off one level per pass: linear per level, no recursion).
"""

from __future__ import annotations

import re

__all__ = ["MAX_JSON_DEPTH", "too_deep"]

#: Arrays and objects one message may nest (a message's own object counts as one).
MAX_JSON_DEPTH = 100

# A JSON string literal, unrolled so that it runs in linear time even when unterminated.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(rb"[\[{][\]}]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``data`` nests arrays and objects more than ``limit`` deep, or its brackets
    (outside strings) do not balance."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets, peeled = _INNERMOST.subn(b"", brackets)
        if not brackets:
            return False
        if not peeled:  # unbalanced: not JSON; refuse it here rather than recurse on it
            return True
    return bool(brackets)
