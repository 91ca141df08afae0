"""ASGI middleware that refuses requests before any route sees them: framing, body size, Host.

Each is a plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, which would add a
task and a memory stream to every request. Each refusal is JSON ``{"detail": "<one sentence>"}``
like every other error of the API, and a refusal sent before the body was read says
``Connection: close``, so the server drops the connection instead of reading (and discarding) a
body nobody wants.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "BodySizeLimitMiddleware", "HostCheckMiddleware", "refusal"]

#: Largest request body accepted, in bytes. A 512x512 drawing as JSON with three decimals is
#: about 1.5 MB and a phone photo a few MB; anything larger is refused with 413 before it is read.
MAX_BODY_BYTES = 8 * 1024 * 1024


def refusal(status_code: int, detail: str, *, close: bool = False) -> JSONResponse:
    """A JSON error answer ``{"detail": detail}``; ``close`` adds ``Connection: close``."""
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse malformed framing with 400 and bodies over ``max_bytes`` with 413.

    A request with both ``Content-Length`` and ``Transfer-Encoding`` is refused at once (RFC 9112
    section 6.1: the two disagree on where the body ends, the classic request-smuggling setup). A
    declared ``Content-Length`` over the limit is refused before any of the body is read. A body
    without one (chunked transfer) is counted while the application reads it, and reading stops at
    the first chunk past the limit, so the server never holds more than about ``max_bytes``.

    Parameters
    ----------
    app : ASGI application
        The application behind the check.
    max_bytes : int
        Largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return refusal(
            413,
            f"The request body is larger than the limit of {self.max_bytes} bytes; send a smaller drawing or image.",
            close=True,
        )

    def _check_headers(self, headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
        """The refusal the request's framing headers call for, or None when they are fine."""
        names = {name for name, _ in headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            return refusal(
                400,
                "The request has both Content-Length and Transfer-Encoding headers; send only one of them.",
                close=True,
            )
        for name, value in headers:
            if name != b"content-length":
                continue
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            if declared < 0:
                return refusal(400, "The Content-Length header is not a non-negative integer.", close=True)
            if declared > self.max_bytes:
                return self._too_large()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._check_headers(scope["headers"])
        if refused is not None:
            await refused(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:  # cannot happen with our routes; never send a second response
                raise
            await self._too_large()(scope, receive, send)


class HostCheckMiddleware:
    """Answer only requests whose ``Host`` names this server: a guard against DNS rebinding.

    A web page on ``attacker.example`` can point that name at 127.0.0.1 and then read this
    server's answers as its own origin; its requests still say ``Host: attacker.example``. Names
    are matched by Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware`
    (ports ignored, IPv6 literals in brackets, ``*.example.com`` wildcards); this class only
    words the refusal as the API's JSON: 421 for a host that is not ours, 400 without a Host.

    Parameters
    ----------
    app : ASGI application
        The application behind the check.
    allowed_hosts : sequence of str
        Host names (and IP literals, IPv6 in brackets) to answer, e.g. ``["localhost",
        "127.0.0.1", "[::1]"]``; ``"*"`` answers any.
    allow_ip_literals : bool, optional
        Also answer any IP address as Host. Safe against DNS rebinding, which needs a name the
        attacker controls; it lets a server on 0.0.0.0 answer a phone that typed its LAN address.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str], allow_ip_literals: bool = False) -> None:
        self.app = app
        self.allow_ip_literals = allow_ip_literals
        self._matcher = TrustedHostMiddleware(_mark_allowed, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or await self._allowed(scope, receive):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is None:
            response = refusal(400, "The request has no Host header; HTTP/1.1 requires one.")
        else:
            response = refusal(
                421,
                f"This server does not answer for the host {host[:100]!r}; use "
                "the address it printed, or start it with --allow-host NAME.",
            )
        await response(scope, receive, send)

    async def _allowed(self, scope: Scope, receive: Receive) -> bool:
        host = _header(scope, b"host")
        if self.allow_ip_literals and host is not None and _is_ip_literal(host):
            return True
        # The matcher calls _mark_allowed (which answers nothing) for a good host, and sends its
        # own text/plain refusal, dropped here, for a bad one.
        probe = dict(scope, digitnet_host_ok=False)
        await self._matcher(probe, receive, _discard)
        return bool(probe["digitnet_host_ok"])


async def _mark_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope["digitnet_host_ok"] = True


async def _discard(message: Message) -> None:
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _is_ip_literal(host: str) -> bool:
    """Whether a Host value (``addr``, ``addr:port``, ``[v6]`` or ``[v6]:port``) is an IP address."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
        return _parses_as_ip(address, version=6)
    address, _, port = host.partition(":")
    return (not port or port.isdigit()) and _parses_as_ip(address, version=4)


def _parses_as_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False
