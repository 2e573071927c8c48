"""The readiness probe's statement: whether PostgreSQL answers through the pool."""

from __future__ import annotations

from sqlalchemy import text

from app.store.db import Database


async def ping(db: Database) -> None:
    """Run `SELECT 1` on a pooled connection; ServiceUnavailable if PostgreSQL is away."""
    async with db.autocommit() as conn:
        await conn.execute(text("SELECT 1"))
