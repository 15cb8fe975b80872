"""A bound on how deeply a JSON request body nests.

A JSON document nested a thousand arrays deep is a few kilobytes, well inside any size limit,
but decoding it recursively exhausts Python's stack (`RecursionError`, a 500) and whatever
decodes it later (storage, the agent, the events stream) would fail the same way. So every JSON
body the API takes is checked first: at most `MAX_JSON_DEPTH` arrays and objects inside one
another, else ``400 INVALID_REQUEST``. The check costs two byte counts for ordinary bodies
(fewer brackets than the limit cannot nest deeper than it); only bodies with many brackets are
scanned (`caxton.wire.depth`, which holds agents' messages to the same bound).
"""

from __future__ import annotations

from caxton.errors import InvalidRequest
from caxton.wire.depth import MAX_JSON_DEPTH, too_deep

__all__ = ["MAX_JSON_DEPTH", "check_depth"]


def check_depth(
    data: bytes, *, limit: int = MAX_JSON_DEPTH, what: str = "the request body"
) -> None:
    """`InvalidRequest` if ``data`` nests arrays and objects more than ``limit`` deep."""
    if too_deep(data, limit):
        raise InvalidRequest(
            f"{what} nests arrays and objects more than {limit} deep (or its brackets do "
            "not balance)",
            details={"max_depth": limit},
        )
