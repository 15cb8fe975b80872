"""How deeply a JSON document nests: the bound every message is held to, wherever it comes from.

A JSON document nested a thousand arrays deep is a few kilobytes, well inside any size limit,
but decoding it recursively exhausts the stack (`RecursionError`), and whatever decodes it later
(storage, the receiving agent, the events stream, an API client) would fail the same way. So a
message may nest at most `MAX_JSON_DEPTH` arrays and objects inside one another (its own object
counts as one): the API refuses deeper bodies with ``400`` (`caxton.api.json_body`) and an
agent's ``send`` or ``schedule`` with ``-1`` (`caxton.wire.envelope`).

`too_deep` costs two byte counts for ordinary documents (fewer brackets than the limit cannot
nest deeper than it); only documents with many brackets are scanned: string literals removed,
then one regular-expression pass over the brackets, linear whatever their shape (about 8 ns a
byte; peeling innermost pairs one level per pass took 100 passes over a document that nests
100 deep all along, 12 ms for a 10 KB message and seconds for a large HTTP body).
"""

from __future__ import annotations

import functools
import re

__all__ = ["MAX_JSON_DEPTH", "too_deep"]

#: Arrays and objects one message may nest (a message's own object counts as one).
MAX_JSON_DEPTH = 100

# A JSON string literal, unrolled so that it runs in linear time even when unterminated.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


@functools.cache
def _balanced(limit: int) -> re.Pattern[bytes]:
    """Brackets (``[`` and ``]`` only) that balance and nest at most ``limit`` deep.

    A bounded depth is a regular language: ``(?:\\[ ... \\])*+`` nested ``limit`` times. The
    loops are possessive, so a mismatch is never retried another way: one pass, linear.
    """
    pattern = b""
    for _ in range(limit):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``data`` nests arrays and objects more than ``limit`` deep, or its brackets
    (outside strings) do not balance. Linear in the size of ``data`` whatever its shape."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(_ONE_KIND, _NOT_BRACKETS)
    return _balanced(limit).fullmatch(brackets) is None
