"""Read-only figures for operators (metrics): aggregates over every tenant, no ciphertext."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import indexes


async def index_sizes(conn: AsyncConnection) -> list[tuple[int, int]]:
    """(index id, live item count) of every index, by id."""
    result = await conn.execute(select(indexes.c.id, indexes.c.n_items).order_by(indexes.c.id))
    return [(int(index_id), int(n_items)) for index_id, n_items in result]
