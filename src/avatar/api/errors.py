"""Every error leaves the API as application/problem+json with a stable ``code``; no tracebacks."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from avatar.errors import AvatarError

log = logging.getLogger("avatar.api")

PROBLEM = "application/problem+json"

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


class ApiError(AvatarError):
    """An error raised by a route with an explicit HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code or _CODES.get(status, "error"))
        self.http_status = status
        self.headers = headers or {}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"about:blank#{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AvatarError)
    async def avatar_error(_: Request, exc: AvatarError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return problem(exc.http_status, exc.code, exc.message, hint=exc.hint, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(422, "validation_error", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status, headers = exc.status_code, dict(getattr(exc, "headers", None) or {})
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if request.url.path == "/v1" or request.url.path.startswith("/v1/"):
            return _openai_error(request, exc, headers)
        if status == 400:
            # The framework's 400s all mean a body it cannot parse (not UTF-8, broken
            # multipart): invalid input, reported like every other validation failure.
            return problem(
                422, "invalid_body", f"the request body cannot be parsed: {detail or 'malformed'}"
            )
        if status == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        code = _CODES.get(status, "error")
        return problem(status, code, detail or code.replace("_", " "), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Connection: close, since Starlette re-raises after this response and uvicorn then
        # drops the socket; a keep-alive client would fail its next request on it.
        return problem(
            500, "internal_error", "internal server error", headers={"Connection": "close"}
        )


def _openai_error(
    request: Request, exc: StarletteHTTPException, headers: dict[str, str]
) -> JSONResponse:
    """A routing error (no such path, wrong method) under ``/v1``, in OpenAI's error shape."""
    from avatar.api.routes.openai_errors import error_body, not_found_response  # no cycle

    if exc.status_code == 404:
        return not_found_response(request.url.path)
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    code = _CODES.get(exc.status_code, "error")
    message = f"{request.method} is not allowed on {request.url.path}"
    body = error_body(exc.status_code, code, message if exc.status_code == 405 else code)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods of the route template this path belongs to (the first declared that matches).

    Starlette names only one route's methods, and a literal path such as
    ``/api/conversations/sessions`` also matches templates like ``/api/conversations/{id}``: the
    Allow header lists the methods of the template that owns the path, as documented.
    """
    path = request.url.path
    routes = [r for r in getattr(request.app.state, "api_routes", []) if r.path_regex.match(path)]
    if not routes:
        return []
    owner = routes[0].path
    methods = {m for r in routes if r.path == owner for m in (getattr(r, "methods", None) or ())}
    return sorted(methods)
