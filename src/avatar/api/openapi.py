"""The OpenAPI document: errors documented as application/problem+json, auth and limits shown."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
