"""The dashboard: static files under ``/ui/`` on the API listener (same TLS, same names).

The files live in the package (``caxton/ui``) and are read once when the app is built; there is
no build step and nothing is fetched from another host. They need no token (they hold no data):
the page asks for a token, keeps it in the tab's ``sessionStorage`` and sends it with every API
call. A strict Content-Security-Policy keeps the page to its own origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from caxton.api.errors import error_response
from caxton.api.keys import UI_PREFIX
from caxton.api.routes import Route

__all__ = ["UI_DIR", "UI_PATHS", "ui_files", "ui_routes"]

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
#: The route templates that need no token (for the OpenAPI document's security).
UI_PATHS = frozenset({UI_PREFIX, UI_PREFIX + "/", UI_PREFIX + "/{name}"})

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def ui_files(directory: Path = UI_DIR) -> dict[str, tuple[bytes, str]]:
    """File name -> (content, content type) of every servable file in `directory` (flat: one
    path segment each)."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix not in _TYPES:
            continue
        files[path.name] = (path.read_bytes(), _TYPES[path.suffix])
    return files


def ui_routes(directory: Path = UI_DIR) -> list[Route]:
    """The dashboard's routes: ``/ui`` redirects to ``/ui/`` (the page), ``/ui/{name}`` is one
    of its files. Documented in the OpenAPI document like every route, as pages."""
    files = ui_files(directory)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(UI_PREFIX + "/")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        found = files.get(name)
        if found is None:
            return error_response(404, "NOT_FOUND", f"the dashboard has no file {name!r}")
        body, ctype = found
        response = web.Response(body=body, headers=_HEADERS)
        response.headers["Content-Type"] = ctype
        return response

    starting = {503: "UNAVAILABLE: the node is starting"}
    return [
        Route(
            method="GET",
            path=UI_PREFIX,
            handler=redirect,
            summary="The dashboard: redirects to /ui/",
            tag="dashboard",
            responses={302: "Found: the dashboard is at /ui/", **starting},
        ),
        Route(
            method="GET",
            path=UI_PREFIX + "/",
            handler=serve,
            summary="The dashboard's page (HTML; no token needed, it asks for one)",
            tag="dashboard",
            responses={200: "The page (text/html)", **starting},
        ),
        Route(
            method="GET",
            path=UI_PREFIX + "/{name}",
            handler=serve,
            summary="One of the dashboard's files (JavaScript, CSS)",
            tag="dashboard",
            responses={200: "The file", **starting},
        ),
    ]
