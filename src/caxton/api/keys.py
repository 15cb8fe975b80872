"""Typed application keys shared by the API's applications and handlers."""

from __future__ import annotations

from aiohttp import web

from caxton.node import Node

__all__ = ["MAX_REQUEST_SIZE", "NODE", "REQUEST_TIMEOUT"]

NODE = web.AppKey("node", Node)
REQUEST_TIMEOUT = web.AppKey("request_timeout", float)
MAX_REQUEST_SIZE = web.AppKey("max_request_size", int)
