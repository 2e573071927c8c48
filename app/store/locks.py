"""PostgreSQL advisory locks: one maintainer (trainer or compactor) per index, across processes.

The lock is session-level, taken on a connection in autocommit mode that the
holder keeps for the whole job; if the process dies, PostgreSQL drops the
connection and the lock with it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

# The first key of the two-key advisory lock space, so ciphervec's locks are recognisable.
NAMESPACE = 0x43565801
# SQLSTATE of a lock wait that outlasted lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


async def try_lock_index(conn: AsyncConnection, index_id: int) -> bool:
    """Take the index's maintenance lock if free."""
    result = await conn.execute(
        text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": NAMESPACE, "id": index_id}
    )
    return bool(result.scalar_one())


async def lock_index_within(conn: AsyncConnection, index_id: int, wait_ms: int) -> bool:
    """Take the index's maintenance lock, waiting at most `wait_ms` for the current
    holder; False if it still holds it then.

    The wait is bounded by lock_timeout instead of the statement timeout,
    which would end it as an error (and may be shorter): both are set for the
    wait and reset to the session's after.
    """
    await conn.execute(
        text("SELECT set_config('lock_timeout', :ms, false), "
             "set_config('statement_timeout', '0', false)"),
        {"ms": str(wait_ms)},
    )
    try:
        await conn.execute(
            text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": NAMESPACE, "id": index_id}
        )
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        return False
    finally:
        await conn.execute(text("RESET lock_timeout"))
        await conn.execute(text("RESET statement_timeout"))
    return True


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
