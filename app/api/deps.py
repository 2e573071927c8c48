"""Shared dependencies: the service context and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.services.auth import Principal, authenticate
from app.services.context import ServiceContext

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_context(request: Request) -> ServiceContext:
    """The context built by the app's lifespan.

    A coroutine although it awaits nothing: FastAPI runs a plain function
    dependency in a worker thread, a hand-off every request would pay.
    """
    ctx: ServiceContext = request.app.state.ctx
    return ctx


Context = Annotated[ServiceContext, Depends(get_context)]


async def get_principal(
    ctx: Context, api_key: Annotated[str | None, Security(_api_key_header)]
) -> Principal:
    """Authenticate the X-API-Key header."""
    return await authenticate(ctx.db, ctx.api_keys, api_key)


Caller = Annotated[Principal, Depends(get_principal)]
