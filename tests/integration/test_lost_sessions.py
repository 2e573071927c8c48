"""A PostgreSQL session that ends under the service (terminated by an administrator,
as every session is when the server stops) is a 503 while in use and is replaced
when idle, never a 500; an advisory lock held on it is simply gone."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.engine.locking import maintenance_lock
from app.errors import ServiceUnavailable
from app.services.context import ServiceContext
from app.store import locks
from app.store.db import Database, driver_connection


@pytest.fixture
async def own_pool(database_url: str) -> AsyncIterator[Database]:
    """A pool of one connection, so the next transaction reuses the last one's session."""
    database = Database(database_url, pool_size=1)
    yield database
    await database.dispose()


async def _terminate(db: Database, pid: int) -> None:
    """End session `pid` as a fast shutdown would (SQLSTATE 57P01 to its client)."""
    async with db.autocommit() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


async def _closed(driver: asyncpg.Connection) -> bool:
    return bool(driver.is_closed())


async def _session(conn: AsyncConnection) -> tuple[int, asyncpg.Connection]:
    driver = await driver_connection(conn)
    return int(await driver.fetchval("SELECT pg_backend_pid()")), driver


async def _through_sqlalchemy(conn: AsyncConnection) -> object:
    return (await conn.execute(text("SELECT 1"))).scalar_one()


async def _through_asyncpg(conn: AsyncConnection) -> object:
    return await (await driver_connection(conn)).fetchval("SELECT 1")


STATEMENTS = [_through_sqlalchemy, _through_asyncpg]


@pytest.mark.parametrize("statement", STATEMENTS)
async def test_a_session_ended_while_idle_in_the_pool_is_replaced_at_checkout(
    own_pool: Database, db: Database, statement: Callable[[AsyncConnection], Awaitable[object]]
) -> None:
    async with own_pool.transaction() as conn:
        pid, driver = await _session(conn)
    await _terminate(db, pid)
    await _until(lambda: _closed(driver))

    async with own_pool.transaction() as conn:
        assert await statement(conn) == 1
        assert (await _session(conn))[0] != pid


@pytest.mark.parametrize("statement", STATEMENTS)
@pytest.mark.parametrize("noticed", [False, True], ids=["at-once", "once-noticed"])
async def test_a_session_ended_mid_transaction_is_service_unavailable(
    own_pool: Database,
    db: Database,
    statement: Callable[[AsyncConnection], Awaitable[object]],
    noticed: bool,
) -> None:
    with pytest.raises(ServiceUnavailable):
        async with own_pool.transaction() as conn:
            pid, driver = await _session(conn)
            await _terminate(db, pid)
            if noticed:
                await _until(lambda: _closed(driver))
            await statement(conn)

    async with own_pool.transaction() as conn:
        assert await statement(conn) == 1


async def test_a_maintenance_lock_whose_session_ended_is_released_without_error(
    settings: Settings, db: Database
) -> None:
    ctx = ServiceContext.build(settings)
    index_id = secrets.randbelow(2**31)

    async def holders() -> list[int]:
        async with db.autocommit() as conn:
            rows = await conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :ns AND objid = :id AND objsubid = 2"
            ), {"ns": locks.NAMESPACE, "id": index_id})
            return [int(pid) for pid in rows.scalars()]

    async def lock_gone() -> bool:
        return not await holders()

    try:
        async with maintenance_lock(ctx, index_id) as held:
            assert held
            (pid,) = await holders()
            await _terminate(db, pid)
            await _until(lock_gone)
        async with maintenance_lock(ctx, index_id) as held:
            assert held
    finally:
        await ctx.close()
