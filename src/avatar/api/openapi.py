"""The OpenAPI document: errors documented as application/problem+json, auth and limits shown.

The document and its two viewers (``/docs``, Swagger UI; ``/redoc``) need the token, or open
reads, like every other read; their scripts and styles come from the ``fastapi-offline``
package, never from a CDN, so they work offline and run no third-party code on our origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from avatar.api.auth import Reader

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_NAMES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "hint": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_COMMON = {
    "401": "Missing or wrong API token",
    "429": "Rate limit exceeded (see Retry-After)",
    "422": "The request is not valid",
    "500": "Internal server error",
}


def install_openapi(app: FastAPI) -> None:
    """Replace the generated schema with one whose error responses say what is really sent."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "AVATAR_API_TOKEN (or the login cookie in a browser)",
            }
        }
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _problems(path, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
    app.include_router(_viewers(app))


def _viewers(app: FastAPI) -> APIRouter:
    router = APIRouter(dependencies=[Reader], include_in_schema=False)

    @router.get("/openapi.json")
    async def document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )

    @router.get("/docs/assets/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSET_NAMES:
            raise HTTPException(404, "no such file")
        return FileResponse(ASSETS / name)

    return router


def _problems(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    wanted = dict(_COMMON)
    if path == "/health":
        wanted.pop("401")
    else:
        operation["security"] = [{"bearer": []}]
    for status, description in wanted.items():
        responses.setdefault(status, {"description": description})
    if path.startswith("/v1/"):
        return  # /v1 answers OpenAI-style error bodies, documented by its own routes
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for status, response in responses.items():
        if status[0] in "45":
            response["content"] = problem
