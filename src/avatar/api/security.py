"""Web hardening: Host allowlist (DNS rebinding), security headers, Origin checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        b"connect-src 'self'; style-src 'self'; script-src 'self'; worker-src 'self' blob:; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
]
# The interactive API docs load their own inline script and styles.
DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (a relaxed CSP only for /docs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "") in DOCS_PATHS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS:
                    if docs and key == b"content-security-policy":
                        continue
                    if key not in present:
                        headers.append((key, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_of(value: str) -> str:
    return (urlsplit(f"//{value}").hostname or "").lower()


def origin_allowed(headers: Headers, allowed_origins: list[str]) -> bool:
    """Browsers send Origin on WebSockets: accept same-origin and configured origins only.

    Programs (no Origin header) are allowed; they must still present the token.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin in allowed_origins:
        return True
    parsed = urlsplit(origin)
    return bool(parsed.netloc) and parsed.netloc.lower() == headers.get("host", "").lower()
