"""A client of a fresh app instance in this process (its own pool and caches),
over httpx's ASGI transport, with the app's lifespan running around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.config import Settings
from app.main import create_app


@asynccontextmanager
async def app_client(
    settings: Settings,
    *,
    api_key: str | None = None,
    base_url: str = "http://test/v1",
    raise_app_exceptions: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a new app built from `settings`, sending `api_key` if given.

    `raise_app_exceptions=False` lets a test see the 500 that Starlette sends
    before it re-raises the exception.
    """
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    headers = {"X-API-Key": api_key} if api_key is not None else {}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url=base_url, headers=headers
    ) as http:
        yield http
