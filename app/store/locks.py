"""PostgreSQL advisory locks: one maintainer (trainer or compactor) per index, across processes.

The lock is session-level, taken on a connection in autocommit mode that the
holder keeps for the whole job; if the process dies, PostgreSQL drops the
connection and the lock with it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# The first key of the two-key advisory lock space, so ciphervec's locks are recognisable.
NAMESPACE = 0x43565801


async def try_lock_index(conn: AsyncConnection, index_id: int) -> bool:
    """Take the index's maintenance lock if free."""
    result = await conn.execute(
        text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": NAMESPACE, "id": index_id}
    )
    return bool(result.scalar_one())


async def lock_index(conn: AsyncConnection, index_id: int) -> None:
    """Take the index's maintenance lock, waiting for the current holder."""
    await conn.execute(text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": NAMESPACE, "id": index_id})


async def unlock_index(conn: AsyncConnection, index_id: int) -> None:
    """Release the index's maintenance lock."""
    await conn.execute(
        text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": NAMESPACE, "id": index_id}
    )


async def locked_index_ids(conn: AsyncConnection) -> list[int]:
    """Ids of indexes whose maintenance lock some session holds right now."""
    result = await conn.execute(
        text(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :ns AND objsubid = 2"
        ),
        {"ns": NAMESPACE},
    )
    return [int(v) for v in result.scalars()]
