"""The web UI: plain HTML, CSS and ES modules from ``avatar/web/static``, served at ``/``.

There is no build step and nothing is loaded from another origin, so the strict CSP of
:mod:`avatar.api.security` (``script-src 'self'; style-src 'self'``) holds for the whole UI.

The files are mounted at ``/`` after every API route, and the mount only claims the paths of
the files it has (``/``, ``/index.html``, ``/css/…``, ``/js/…``, …) and only when no API route
matches the path with another method. So the API keeps answering exactly as before: 405 for a
wrong method, trailing-slash redirects, problem+json 404s for unknown paths.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).resolve().parents[2] / "web" / "static"
# ES modules must come with a JavaScript MIME type (nosniff is on); some systems' mime.types
# map .js to something else, so the types the UI uses are set here explicitly.
_TYPES: Final = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
}


class UiFiles(StaticFiles):
    """Static files that browsers revalidate (``no-cache``), so an upgrade shows at once."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


class UiMount(Mount):
    """A mount at ``/`` that only claims the UI's own top-level names (see the module doc)."""

    def __init__(self, routes: list[BaseRoute], directory: Path) -> None:
        super().__init__("/", app=UiFiles(directory=directory, html=True), name="web")
        self._api_routes = list(routes)
        self._names = {entry.name for entry in directory.iterdir()}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        first = scope["path"].lstrip("/").split("/", 1)[0]
        if first and first not in self._names:
            return Match.NONE, {}
        if any(route.matches(scope)[0] != Match.NONE for route in self._api_routes):
            return Match.NONE, {}  # e.g. a GET on a POST-only API path: keep the API's 405
        return super().matches(scope)


def mount_web(app: FastAPI) -> None:
    """Serve the web UI at ``/``; call after every API route has been included."""
    for suffix, media_type in _TYPES.items():
        mimetypes.add_type(media_type, suffix)
    app.router.routes.append(UiMount(app.router.routes, STATIC_DIR))
