"""The per-index maintenance lock (training, compaction) as a context manager."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.context import EngineContext
from app.store import indexes as index_repo
from app.store import locks
from app.store.db import connection_lost

# A waiting caller checks this often that the index still exists.
_WAIT_SLICE_S = 1.0


@asynccontextmanager
async def maintenance_lock(
    ctx: EngineContext, index_id: int, *, wait_s: float = 0.0
) -> AsyncIterator[bool]:
    """Hold the index's advisory lock for the block; yields False if another job
    holds it (for longer than `wait_s`, when given), or if the index is deleted
    while the caller waits."""
    async with ctx.db.autocommit() as conn:
        if not await _acquire(conn, index_id, wait_s):
            yield False
            return
        try:
            yield True
        finally:
            await _unlock(conn, index_id)


async def _acquire(conn: AsyncConnection, index_id: int, wait_s: float) -> bool:
    """Take the lock, waiting in slices between which the index must still exist."""
    if await locks.try_lock_index(conn, index_id):
        return True
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        wait_ms = max(1, round(1000 * min(left, _WAIT_SLICE_S)))
        if await locks.lock_index_within(conn, index_id, wait_ms):
            return True
        if not await index_repo.index_exists(conn, index_id):
            return False
    return False


async def _unlock(conn: AsyncConnection, index_id: int) -> None:
    """Release the lock. A session that has ended has released it already: the
    holder's work is not failed for that."""
    try:
        await locks.unlock_index(conn, index_id)
    except Exception as error:
        if not await connection_lost(conn, error):
            raise
