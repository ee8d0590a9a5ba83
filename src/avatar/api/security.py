"""Web hardening: Host allowlist (DNS rebinding), security headers, Origin checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
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
# The interactive API docs start with an inline script and style; their files are ours.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (inline code allowed only for /docs)."""

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
                        value = DOCS_CSP
                    if key not in present:
                        headers.append((key, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_of(value: str) -> str:
    return (urlsplit(f"//{value}").hostname or "").lower()


_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def same_origin(origin: str, conn: HTTPConnection, allowed_origins: list[str]) -> bool:
    """``origin`` is this server as the client reached it (scheme, host and port), or a
    configured origin. Behind a TLS proxy the scheme is right only when the proxy is trusted
    (``AVATAR_SERVER__TRUSTED_PROXIES``) or its origin is listed."""
    if origin in allowed_origins:
        return True
    parsed = urlsplit(origin)
    scheme = _HTTP_SCHEME.get(conn.url.scheme, conn.url.scheme)
    host = conn.headers.get("host", "").lower()
    return bool(parsed.netloc) and parsed.scheme == scheme and parsed.netloc.lower() == host


def origin_allowed(conn: HTTPConnection, allowed_origins: list[str]) -> bool:
    """Browsers send Origin on WebSockets: accept same-origin and configured origins only.

    Programs (no Origin header) are allowed; they must still present the token.
    """
    origin = conn.headers.get("origin")
    return origin is None or same_origin(origin, conn, allowed_origins)


def foreign_request(conn: HTTPConnection, allowed_origins: list[str]) -> bool:
    """A browser says another site's page sent this request: its ``Origin`` is not ours (nor a
    configured one), or ``Sec-Fetch-Site`` is not same-origin. Our own pages send
    ``Origin: null`` with their writes (their ``Referrer-Policy: no-referrer`` makes browsers
    hide it), so a null origin is ours only when ``Sec-Fetch-Site`` says so."""
    origin = conn.headers.get("origin")
    site = conn.headers.get("sec-fetch-site")
    if origin is not None and origin != "null":
        return not same_origin(origin, conn, allowed_origins)
    if origin == "null":
        return site != "same-origin"
    return site not in (None, "same-origin", "none")
