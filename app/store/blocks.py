"""Repository of encrypted vector blocks, grouped by index version and list tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import vector_blocks


class BlockRow(NamedTuple):
    """A stored block: where it belongs and its ciphertext."""

    block_id: int
    version: int
    list_tag: bytes
    n_vectors: int
    ciphertext: bytes


async def insert_blocks(conn: AsyncConnection, index_id: int, blocks: Sequence[BlockRow]) -> None:
    """Store new blocks in one multi-row INSERT."""
    if blocks:
        await conn.execute(
            insert(vector_blocks), [{"index_id": index_id, **b._asdict()} for b in blocks]
        )


async def blocks_of_version(conn: AsyncConnection, index_id: int, version: int) -> list[BlockRow]:
    """Every block of one index version."""
    result = await conn.execute(
        select(
            vector_blocks.c.block_id,
            vector_blocks.c.version,
            vector_blocks.c.list_tag,
            vector_blocks.c.n_vectors,
            vector_blocks.c.ciphertext,
        ).where(vector_blocks.c.index_id == index_id, vector_blocks.c.version == version)
    )
    return [BlockRow(*r) for r in result]
