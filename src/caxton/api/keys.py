"""Typed application keys shared by the API's applications and handlers."""

from __future__ import annotations

from aiohttp import web

from caxton.node import Node

__all__ = ["MAX_REQUEST_SIZE", "NODE", "PUBLIC_PATHS", "REQUEST_TIMEOUT", "UI_PREFIX", "is_ui_path"]

NODE = web.AppKey("node", Node)
REQUEST_TIMEOUT = web.AppKey("request_timeout", float)
MAX_REQUEST_SIZE = web.AppKey("max_request_size", int)

#: Routes any caller reaches, with no token and whatever the node's state.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/api/v1/openapi.json"})

#: The dashboard's static files (`caxton.api.ui`): served without a token, since the page holds
#: no data; it asks for the token and sends it with every API call it makes.
UI_PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    """Whether `path` is one of the dashboard's static files (or its root)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
