"""PostgreSQL's conflict aborts (deadlock, serialization failure) surface as
TransactionConflict, which writes rerun, never as a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import TransactionConflict
from app.store.db import Database


async def _lock_in_order(db: Database, first: int, second: int, both_hold: asyncio.Barrier) -> None:
    async with db.transaction() as conn:
        await _xact_lock(conn, first)
        await both_hold.wait()
        await _xact_lock(conn, second)


async def _xact_lock(conn: AsyncConnection, key: int) -> None:
    await conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                       {"ns": 0x7E57, "key": key})


async def test_a_deadlock_victim_raises_transaction_conflict(db: Database) -> None:
    both_hold = asyncio.Barrier(2)
    outcomes = await asyncio.gather(
        _lock_in_order(db, 1, 2, both_hold), _lock_in_order(db, 2, 1, both_hold),
        return_exceptions=True,
    )

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], TransactionConflict)
    assert errors[0].status_code == 409


@pytest.fixture
async def probe_table(db: Database) -> AsyncIterator[str]:
    """A one-row scratch table, dropped after the test (the schema is the app's)."""
    async with db.transaction() as conn:
        await conn.execute(text("CREATE TABLE conflict_probe (n int)"))
        await conn.execute(text("INSERT INTO conflict_probe VALUES (1)"))
    yield "conflict_probe"
    async with db.transaction() as conn:
        await conn.execute(text("DROP TABLE conflict_probe"))


async def test_a_serialization_failure_raises_transaction_conflict(
    db: Database, probe_table: str
) -> None:
    with pytest.raises(TransactionConflict):
        async with db.transaction() as reader:
            await reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            await reader.execute(text(f"SELECT n FROM {probe_table}"))  # noqa: S608 - a constant
            async with db.transaction() as writer:
                await writer.execute(text(f"UPDATE {probe_table} SET n = 2"))  # noqa: S608
            await reader.execute(text(f"UPDATE {probe_table} SET n = 3"))  # noqa: S608
