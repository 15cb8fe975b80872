"""A bound on how deeply a JSON request body nests.

A JSON document nested a thousand arrays deep is a few kilobytes, well inside any size limit,
but decoding it recursively exhausts Python's stack (`RecursionError`, a 500) and whatever
decodes it later (storage, the agent, the events stream) would fail the same way. So every JSON
body the API takes is checked first: at most `MAX_JSON_DEPTH` arrays and objects inside one
another, else ``400 INVALID_REQUEST``. The check costs two byte counts for ordinary bodies
(fewer brackets than the limit cannot nest deeper than it); only bodies with many brackets are
scanned (string literals removed, then innermost pairs peeled off one level per pass).
"""

from __future__ import annotations

import re

from caxton.errors import InvalidRequest

__all__ = ["MAX_JSON_DEPTH", "check_depth"]

#: Arrays and objects one JSON body may nest (a message's own object counts as one).
MAX_JSON_DEPTH = 100

# A JSON string literal, unrolled so that it runs in linear time even when unterminated.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(rb"[\[{][\]}]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(data: bytes, limit: int) -> bool:
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


def check_depth(
    data: bytes, *, limit: int = MAX_JSON_DEPTH, what: str = "the request body"
) -> None:
    """`InvalidRequest` if ``data`` nests arrays and objects more than ``limit`` deep."""
    if _too_deep(data, limit):
        raise InvalidRequest(
            f"{what} nests arrays and objects more than {limit} deep (or its brackets do "
            "not balance)",
            details={"max_depth": limit},
        )
