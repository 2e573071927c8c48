"""What a request body must pass before it is read: its size (larger bodies get
413 before they are parsed) and its sender's API key (an unauthenticated body is
refused unread, so no anonymous client can make the service receive an upload)."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import domain_error_response
from app.errors import CiphervecError
from app.services.auth import authenticate
from app.services.context import ServiceContext

API_KEY_HEADER = b"x-api-key"
# Where the authenticated principal waits for the route's dependency.
PRINCIPAL_STATE = "principal"


def _too_large(limit: int) -> str:
    return f"Request body exceeds the limit of {limit} bytes"


class BodySizeLimit:
    """ASGI middleware refusing bodies over `max_bytes`, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps({"detail": _too_large(self.max_bytes)}).encode()
            await send({
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            })
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=_too_large(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    declared = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (declared is not None and declared != b"0")


class AuthenticateBeforeBody:
    """ASGI middleware verifying the X-API-Key of every request that carries a body
    before any of it is read; a refused key gets its 401 (or 503) at once.

    Every route that takes a body needs a key. The principal found is left in
    the request state for the route's own authentication (app.api.deps), so
    the key is verified once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        ctx: ServiceContext = scope["app"].state.ctx
        key = dict(scope["headers"]).get(API_KEY_HEADER)
        try:
            principal = await authenticate(
                ctx.db, ctx.api_keys, key.decode("latin-1") if key is not None else None
            )
        except CiphervecError as exc:
            response = domain_error_response(exc)
            # The body stays unread: the connection cannot serve another request.
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, receive, send)
