"""The per-index maintenance lock (training, compaction) as a context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.services.context import ServiceContext
from app.store import locks


@asynccontextmanager
async def maintenance_lock(
    ctx: ServiceContext, index_id: int, *, wait: bool
) -> AsyncIterator[bool]:
    """Hold the index's advisory lock for the block; yields False if busy and not waiting."""
    async with ctx.db.autocommit() as conn:
        if wait:
            await locks.lock_index(conn, index_id)
        elif not await locks.try_lock_index(conn, index_id):
            yield False
            return
        try:
            yield True
        finally:
            await locks.unlock_index(conn, index_id)
