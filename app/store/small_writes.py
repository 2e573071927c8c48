"""A small upsert's new items, blocks and posting chunks, written by one statement.

An upsert of a few items writes up to four tables (items, vector_blocks,
block_parts, metadata_postings); by COPY that is a statement of two round
trips each, most of what such a write costs PostgreSQL's side. Here the rows
travel as column arrays of one statement whose data-modifying CTEs insert
into all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.blocks import BlockRow, block_rows, part_rows
from app.store.db import driver_connection
from app.store.items import ItemsExist, is_duplicate_item
from app.store.postings import PostingChunk

_INSERT = """
    WITH new_items AS (
        INSERT INTO items (index_id, id_token, seq, payload)
        SELECT $1::bigint, * FROM unnest($2::bytea[], $3::bigint[], $4::bytea[])
    ), new_blocks AS (
        INSERT INTO vector_blocks (index_id, block_id, version, list_tag, n_vectors)
        SELECT $1::bigint, * FROM unnest($5::bigint[], $6::integer[], $7::bytea[], $8::integer[])
    ), new_postings AS (
        INSERT INTO metadata_postings (index_id, token, chunk_id, n_seqs, ciphertext)
        SELECT $1::bigint, * FROM unnest($12::bytea[], $13::bigint[], $14::integer[], $15::bytea[])
    )
    INSERT INTO block_parts (index_id, block_id, part, data)
    SELECT $1::bigint, * FROM unnest($9::bigint[], $10::integer[], $11::bytea[])
"""


def _columns(rows: list[tuple[Any, ...]], skip: int) -> list[list[Any]]:
    """Column arrays of `rows`, leaving out the first `skip` columns."""
    return [list(column) for column in zip(*rows, strict=True)][skip:] if rows else []


async def insert_items_and_blocks(
    conn: AsyncConnection,
    index_id: int,
    tokens: Sequence[bytes],
    seqs: Sequence[int],
    payloads: Sequence[bytes],
    blocks: Sequence[BlockRow],
    postings: Sequence[PostingChunk],
) -> None:
    """Insert new items, their blocks and posting chunks in one statement, inside
    the caller's transaction; raises ItemsExist if any token is already stored."""
    blocks_columns = _columns(block_rows(index_id, blocks), 1) or [[], [], [], []]
    parts_columns = _columns(part_rows(index_id, blocks), 1) or [[], [], []]
    posting_columns = _columns([tuple(chunk) for chunk in postings], 0) or [[], [], [], []]
    driver = await driver_connection(conn)
    try:
        await driver.execute(
            _INSERT, index_id, list(tokens), list(seqs), list(payloads),
            *blocks_columns, *parts_columns, *posting_columns,
        )
    except asyncpg.UniqueViolationError as exc:
        if not is_duplicate_item(exc):
            raise
        raise ItemsExist from exc
