"""Errors of the ``/v1`` routes in OpenAI's shape, and the checks made before a body is read.

The ``openai`` SDK reads ``{"error": {"message", "type", "param", "code"}}`` and raises its own
exception per status (``BadRequestError`` for 400, ``AuthenticationError`` for 401,
``NotFoundError`` for 404, ``RateLimitError`` for 429, ...). The body is that object alone, as
OpenAI's; ``code`` is AVATAR's stable error code. Invalid requests are 400, as OpenAI's.

:class:`OpenAIRoute` checks the token and caps the body size before FastAPI reads the body: an
unauthenticated or oversized upload is refused without being spooled to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Message

from avatar.api.auth import require_token
from avatar.api.deps import app_state
from avatar.api.errors import _CODES, ApiError
from avatar.api.schemas.openai import UNSUPPORTED, OpenAIErrorDetail, OpenAIErrorPublic
from avatar.errors import AvatarError

log = logging.getLogger("avatar.api")

UPLOAD_LIMIT: Final = 25 * 1024 * 1024
MULTIPART_SLACK: Final = 64 * 1024  # boundaries and form fields around the file
JSON_BODY_LIMIT: Final = 1024 * 1024
UPLOAD_PATHS: Final = frozenset({"/v1/audio/transcriptions"})
_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}
ERROR_RESPONSES: Final[dict[int, dict[str, Any]]] = {
    status: {"model": OpenAIErrorPublic, "description": description}
    for status, description in {
        401: "Missing or wrong API token.",
        413: "The body is too large.",
        415: "The audio format is not supported.",
        400: "The request is not valid (the message names the parameter).",
        404: "No such model or route.",
        429: "Rate limit exceeded (see Retry-After).",
        502: "The engine failed.",
        503: "The engine is unavailable.",
        504: "The engine timed out.",
    }.items()
}


def error_body(
    status: int, code: str, message: str, hint: str | None = None, param: str | None = None
) -> OpenAIErrorPublic:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    text = f"{message} ({hint})" if hint else message
    return OpenAIErrorPublic(
        error=OpenAIErrorDetail(message=text, type=kind, param=param, code=code)
    )


def upload_too_large(limit: int = UPLOAD_LIMIT) -> ApiError:
    return ApiError(
        413,
        f"the upload is over the {limit // 2**20} MiB limit",
        code="payload_too_large",
        hint="send a shorter or more compressed file",
    )


def error_response(exc: Exception) -> JSONResponse:
    """Any exception of a ``/v1`` route as an OpenAI-style error response."""
    if isinstance(exc, HTTPException) and isinstance(exc.__cause__, AvatarError):
        exc = exc.__cause__  # our body-size cap, raised while FastAPI parsed the form
    headers: dict[str, str] | None = None
    param = None
    if isinstance(exc, AvatarError):
        status, code, message, hint = exc.http_status, exc.code, exc.message, exc.hint
        headers = getattr(exc, "headers", None)
        param = getattr(exc, "param", None)
    elif isinstance(exc, RequestValidationError):
        status, code, hint = 400, "invalid_request", None
        param, message = describe_validation(exc)
        top = (param or "").split(".", 1)[0]
        if top in UNSUPPORTED:  # an option turned on that AVATAR cannot honour
            code, param, message = "unsupported_parameter", top, unsupported(top)
    elif isinstance(exc, HTTPException) and exc.status_code in (400, 422):  # undecodable body
        status, code, hint = 400, "invalid_body", "send UTF-8 JSON or multipart/form-data"
        message = "the request body cannot be parsed"
    elif isinstance(exc, HTTPException):
        status, hint = exc.status_code, None
        code = _CODES.get(status, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
    else:
        log.exception("unhandled error on an OpenAI-compatible route", exc_info=exc)
        status, code, message, hint = 500, "internal_error", "internal server error", None
    body = error_body(status, code, message, hint, param)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> tuple[str | None, str]:
    """The parameter at fault (dotted, as OpenAI's ``param``) and a sentence a person can act on."""
    first = exc.errors()[0] if exc.errors() else {}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return None, "the request body is not valid JSON"
    if kind in ("model_attributes_type", "dict_type") and len(first.get("loc", ())) <= 1:
        return None, "the request body must be a JSON object"
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
    # pydantic names the member of a union it tried ("str", "list[...]"): not a parameter
    loc = [p for p in loc if not (p[:1].islower() and ("[" in p or p in _TYPE_NAMES))]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    if kind == "missing":
        return param, f"missing required parameter '{param}'"
    if kind == "extra_forbidden":
        return param, f"unrecognized request argument supplied: {param}"
    return param, f"invalid value for '{param or 'request'}': {message[:1].lower()}{message[1:]}"


_TYPE_NAMES: Final = frozenset({"str", "int", "float", "bool", "list", "dict", "function-after"})


def not_found_response(path: str) -> JSONResponse:
    body = error_body(404, "not_found", f"unknown URL: {path}", "see /docs for the /v1 routes")
    return JSONResponse(body.model_dump(), status_code=404)


def model_not_found(model_id: str) -> ApiError:
    error = ApiError(
        404, f"no model '{model_id}'", code="model_not_found", hint="GET /v1/models lists them"
    )
    error.param = "model"  # type: ignore[attr-defined]
    return error


class UnsupportedParameter(ApiError):
    """A request option AVATAR cannot honour: refused, never silently ignored."""

    def __init__(self, param: str, why: str) -> None:
        super().__init__(400, f"'{param}' is not supported: {why}", code="unsupported_parameter")
        self.param = param


def unsupported_parameter(param: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(param, why)


def unsupported(param: str) -> str:
    return f"'{param}' is not supported: {UNSUPPORTED[param]}"


def capped(request: Request, limit: int) -> Request:
    """``request`` whose body raises 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise upload_too_large(limit)
    receive, seen = request.receive, 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise upload_too_large(limit)
        return message

    return Request(request.scope, counted)


class OpenAIRoute(APIRoute):
    """A route whose errors take OpenAI's shape; writes check the token before the body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = UPLOAD_LIMIT + MULTIPART_SLACK if self.path in UPLOAD_PATHS else JSON_BODY_LIMIT

        async def route(request: Request) -> Response:
            try:
                if request.method != "GET":
                    await require_token(request, app_state(request))
                return await handler(capped(request, limit))
            except Exception as exc:  # every error leaves as an OpenAI error object
                return error_response(exc)

        return route
