"""Typed application keys shared by the API's applications and handlers."""

from __future__ import annotations

from aiohttp import web

from caxton.node import Node

__all__ = ["MAX_REQUEST_SIZE", "NODE", "PUBLIC_PATHS", "REQUEST_TIMEOUT"]

NODE = web.AppKey("node", Node)
REQUEST_TIMEOUT = web.AppKey("request_timeout", float)
MAX_REQUEST_SIZE = web.AppKey("max_request_size", int)

#: Routes any caller reaches, with no token and whatever the node's state.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/api/v1/openapi.json"})
