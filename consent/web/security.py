"""Security headers on every response, and the CSRF check for every form post."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent.web.errors import CsrfRejected

CSRF_FIELD = "csrf_token"
# No script at all; forms post only to this origin (plus what a page adds).
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS: Mapping[str, str] = {
    "x-content-type-options": "nosniff",
    # "no-referrer" would make browsers send "Origin: null" on our own form posts.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
HSTS = "max-age=31536000"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SecurityHeaders:
    """ASGI middleware: strict headers unless the response set its own.

    Pages are personal, so nothing but static files may be cached. HSTS is left
    out on loopback, where it would pin every port of ``localhost`` to HTTPS in the
    developer's browser.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = dict(HEADERS)
                wanted["content-security-policy"] = CSP
                wanted["cache-control"] = "public, max-age=3600" if static else "no-store"
                if self.hsts:
                    wanted["strict-transport-security"] = HSTS
                for name, value in wanted.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (Fetch metadata
    first, then ``Origin``); requests from non-browsers carry neither and pass."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def checked_form(request: Request, expected: str | None) -> FormData:
    """The posted form, if it carries the session's CSRF token and comes from our origin."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if (
        not expected
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
        or not same_origin(request)
    ):
        raise CsrfRejected("CSRF check failed")
    return form
