"""The size limits of request bodies, held while a body is read whatever its framing.

A body's limit depends on its media type: DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB) for JSON and
everything else, API_MAX_UPLOAD_BYTES (6 MiB) for multipart uploads. Three places hold bodies to
it, each with `body_limit()` and the one 413 answer below:

- the server PayGo runs (paygo/server.py, Daphne) stops reading the socket at the limit, so that
  neither it nor the kernel's buffers take more than that from a client;
- `BodyLimitMiddleware`, the ASGI application's outermost layer (paygo/asgi.py), counts what any
  ASGI server streams to it, and gives Django a body of known length: a chunked body has no
  Content-Length, and Django and DRF read a body without one as empty;
- paygo.api.middleware.ApiErrorMiddleware refuses a declared length over the limit for requests
  that reach Django any other way (the test client, WSGI).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings

from paygo.api.errors import MALFORMED, error_body

MULTIPART = "multipart/form-data"


def body_limit(content_type: str | bytes | None) -> int:
    """The most bytes a request body of this Content-Type may have."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin1")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return settings.API_MAX_UPLOAD_BYTES if media_type == MULTIPART else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large_message(limit: int) -> str:
    return f"The request body is over the limit of {limit} bytes."


def error_json(status_code: int, message: str | None = None, *, code: str | None = None) -> bytes:
    """An answer in the API's error format, as the bytes of a JSON body."""
    return json.dumps(error_body(status_code, message, code=code)).encode()


def too_large_body(limit: int) -> bytes:
    """The 413 in the API's error format, as the bytes of a JSON body."""
    return error_json(413, too_large_message(limit), code="too_large")


def malformed_body() -> bytes:
    """The 400 in the API's error format for a request the server cannot parse, as JSON bytes."""
    return error_json(400, MALFORMED, code="bad_request")


def error_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of an answer in the API's error format whose JSON bytes are `body`."""
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]


def raw_error_response(status_line: bytes, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 answer in the API's error format (`body`, its JSON bytes), whose connection
    then closes: for the servers' own refusals, written before or without the application."""
    head = b"".join(b"%s: %s\r\n" % header for header in [*headers, *error_headers(body)])
    return status_line + b"\r\n" + head + b"connection: close\r\n\r\n" + body


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key.lower() == name), None)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyLimitMiddleware:
    """ASGI: reads an HTTP request's body up to its limit before the application runs.

    Over the limit (declared, or counted as it arrives), the answer is the 413 and the application
    never runs; the rest of the body is not read. Within it, the application gets the body it was
    sent, and a Content-Length header saying how long it is (Django reads the whole body before a
    view runs anyway, so holding it here costs nothing more).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        limit = body_limit(_header(headers, b"content-type"))
        declared = _header(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return

        messages: deque[dict[str, Any]] = deque()
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body was all sent: nobody to answer
            size += len(message.get("body", b""))
            if size > limit:
                await _refuse(send, limit)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.popleft() if messages else await receive()

        framing = (b"content-length", b"transfer-encoding")
        framed = [(key, value) for key, value in headers if key.lower() not in framing]
        framed.append((b"content-length", str(size).encode()))
        await self.app({**scope, "headers": framed}, replay, send)


async def _refuse(send: Send, limit: int) -> None:
    body = too_large_body(limit)
    await send({"type": "http.response.start", "status": 413, "headers": error_headers(body)})
    await send({"type": "http.response.body", "body": body})
