"""Shared dependencies: the service context and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.api.limits import PRINCIPAL_STATE
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
    request: Request, ctx: Context, api_key: Annotated[str | None, Security(_api_key_header)]
) -> Principal:
    """The principal of the X-API-Key header: verified already when the request has a
    body (app.api.limits), else verified here."""
    verified = getattr(request.state, PRINCIPAL_STATE, None)
    if isinstance(verified, Principal):
        return verified
    return await authenticate(ctx.db, ctx.api_keys, api_key)


Caller = Annotated[Principal, Depends(get_principal)]
