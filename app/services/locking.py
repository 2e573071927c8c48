"""The per-index maintenance lock (training, compaction) as a context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.context import ServiceContext
from app.store import locks
from app.store.db import connection_lost


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
            await _unlock(conn, index_id)


async def _unlock(conn: AsyncConnection, index_id: int) -> None:
    """Release the lock. A session that has ended has released it already: the
    holder's work is not failed for that."""
    try:
        await locks.unlock_index(conn, index_id)
    except Exception as error:
        if not await connection_lost(conn, error):
            raise
