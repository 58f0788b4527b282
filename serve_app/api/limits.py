"""Refusing a request before its body is read: the API key first, then the declared size.

A plain ASGI middleware, ahead of FastAPI, so nothing has buffered a byte yet: a request to a
keyed route without a valid key gets 401, and one whose `Content-Length` passes
`limits.max_body_bytes` gets 413, both at once, whatever is still coming. A body sent without
a length is counted as it arrives and refused with 413 once it passes the limit; the app then
sees the client as gone.
"""

from __future__ import annotations

import json
from typing import Callable

from serve_app.core.errors import (
    AuthenticationError,
    InvalidRequestError,
    PayloadTooLargeError,
    TesseraError,
    native_error,
)

# Paths (below the app's prefix) that take no API key: signed links carry their own proof.
PUBLIC = ("/v1/files/", "/healthz", "/readyz", "/playground", "/docs", "/redoc",
          "/openapi.json")
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


async def _answer(send, error: TesseraError, shape=native_error) -> None:
    body = json.dumps(shape(error.status_code, error.code, error.message, error.param)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> TesseraError:
    return PayloadTooLargeError(f"request bodies are limited to {limit} bytes "
                                "(limits.max_body_bytes)")


class BodyLimits:
    """`settings()` answers (max body bytes, the key check) for the replica serving now."""

    def __init__(self, asgi, settings: Callable[[], tuple[int, Callable]],
                 shapes: dict[str, Callable] | None = None):
        self.asgi = asgi
        self.settings = settings
        self.shapes = shapes or {}  # path prefix -> a dialect's error shape

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            return await self.asgi(scope, receive, send)
        limit, authenticate = self.settings()
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        shape = next((f for prefix, f in self.shapes.items() if path.startswith(prefix)),
                     native_error)
        if not path.startswith(PUBLIC):
            try:
                authenticate(headers)
            except AuthenticationError as exc:
                return await _answer(send, exc, shape)
        declared = headers.get("content-length", "")
        if declared:
            if not (declared.isascii() and declared.isdigit()):
                return await _answer(send, InvalidRequestError("Content-Length is not a number"),
                                     shape)
            if int(declared) > limit:
                return await _answer(send, too_large(limit), shape)
            return await self.asgi(scope, receive, send)
        await self._counted(scope, receive, send, limit, shape)

    async def _counted(self, scope, receive, send, limit: int, shape) -> None:
        """No declared length: count what arrives, and answer 413 once it is over."""
        seen = 0
        refused = False

        async def counting_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await _answer(send, too_large(limit), shape)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:  # the 413 is the answer; whatever the app says after is dropped
                await send(message)

        await self.asgi(scope, counting_receive, guarded_send)
