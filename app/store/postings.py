"""Repository of the metadata index: (index, term token, chunk id) -> sealed write sequences."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, BYTEA
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import copy_rows
from app.store.tables import metadata_postings


class PostingChunk(NamedTuple):
    """One sealed chunk of a term's posting list."""

    token: bytes
    chunk_id: int
    n_seqs: int
    ciphertext: bytes


_COLUMNS = (
    metadata_postings.c.token, metadata_postings.c.chunk_id, metadata_postings.c.n_seqs,
    metadata_postings.c.ciphertext,
)


async def insert_chunks(
    conn: AsyncConnection, index_id: int, chunks: Sequence[PostingChunk]
) -> None:
    """Append chunks (by COPY, as items are inserted)."""
    if chunks:
        await copy_rows(
            conn, metadata_postings, ("index_id", "token", "chunk_id", "n_seqs", "ciphertext"),
            [(index_id, *chunk) for chunk in chunks],
        )


async def chunks_of_terms(
    conn: AsyncConnection, index_id: int, tokens: Collection[bytes], *, lock: bool = False
) -> list[PostingChunk]:
    """Every chunk of the given terms' posting lists (locked for a merge with `lock`)."""
    query = select(*_COLUMNS).where(
        metadata_postings.c.index_id == index_id,
        metadata_postings.c.token
        == func.any(bindparam("tokens", list(tokens), type_=ARRAY(BYTEA))),
    )
    result = await conn.execute(query.with_for_update() if lock else query)
    return [PostingChunk(*row) for row in result]


async def replace_chunks(
    conn: AsyncConnection, index_id: int, token: bytes, old_ids: Sequence[int],
    merged: PostingChunk | None,
) -> None:
    """Swap a term's chunks `old_ids` for one merged chunk (or none, when all were stale)."""
    await conn.execute(
        delete(metadata_postings).where(
            metadata_postings.c.index_id == index_id,
            metadata_postings.c.token == token,
            metadata_postings.c.chunk_id == func.any(
                bindparam("ids", list(old_ids), type_=ARRAY(BIGINT))
            ),
        )
    )
    if merged is not None:
        await insert_chunks(conn, index_id, [merged])

