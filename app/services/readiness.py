"""Readiness: whether this process can serve requests now, i.e. PostgreSQL answers."""

from __future__ import annotations

import asyncio

from app.errors import ServiceUnavailable
from app.services.context import ServiceContext
from app.store import health
from app.store.db import UNAVAILABLE_DETAIL

# A probe answers within this even when PostgreSQL hangs (the pool itself would
# wait up to the connect timeout, 5 s by default, per connection attempt).
READY_TIMEOUT_S = 2.0


async def check(ctx: ServiceContext) -> None:
    """Return when PostgreSQL answers within READY_TIMEOUT_S; ServiceUnavailable otherwise."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await health.ping(ctx.db)
    except TimeoutError as error:
        raise ServiceUnavailable(UNAVAILABLE_DETAIL) from error
