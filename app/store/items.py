"""Repository of item rows: (index, id token) -> (write sequence, ciphertext)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, BYTEA
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import items


class ItemRow(NamedTuple):
    """An item as stored: its token, current write sequence and payload ciphertext."""

    id_token: bytes
    seq: int
    payload: bytes


_UPSERT = text(
    """
    INSERT INTO items (index_id, id_token, seq, payload)
    SELECT :index_id, t.id_token, t.seq, t.payload
    FROM unnest(:tokens, :seqs, :payloads) AS t(id_token, seq, payload)
    ON CONFLICT (index_id, id_token)
    DO UPDATE SET seq = EXCLUDED.seq, payload = EXCLUDED.payload
    """
).bindparams(
    bindparam("tokens", type_=ARRAY(BYTEA)),
    bindparam("seqs", type_=ARRAY(BIGINT)),
    bindparam("payloads", type_=ARRAY(BYTEA)),
)


async def upsert_items(
    conn: AsyncConnection,
    index_id: int,
    tokens: Sequence[bytes],
    seqs: Sequence[int],
    payloads: Sequence[bytes],
) -> None:
    """Insert or overwrite many items in one statement."""
    await conn.execute(
        _UPSERT,
        {"index_id": index_id, "tokens": list(tokens), "seqs": list(seqs),
         "payloads": list(payloads)},
    )


_COLUMNS = (items.c.id_token, items.c.seq, items.c.payload)


def _any_token(tokens: Sequence[bytes]) -> ColumnElement[bool]:
    return items.c.id_token == func.any(bindparam("tokens", list(tokens), type_=ARRAY(BYTEA)))


async def items_by_tokens(
    conn: AsyncConnection, index_id: int, tokens: Sequence[bytes]
) -> list[ItemRow]:
    """The live items among `tokens` (absent ones are simply missing)."""
    result = await conn.execute(
        select(*_COLUMNS).where(items.c.index_id == index_id, _any_token(tokens))
    )
    return [ItemRow(*r) for r in result]


async def items_by_seqs(
    conn: AsyncConnection, index_id: int, seqs: Collection[int]
) -> list[ItemRow]:
    """The items whose current write sequence is among `seqs`; stale sequences match nothing."""
    result = await conn.execute(
        select(*_COLUMNS).where(
            items.c.index_id == index_id,
            items.c.seq == func.any(bindparam("seqs", list(seqs), type_=ARRAY(BIGINT))),
        )
    )
    return [ItemRow(*r) for r in result]


async def delete_items(conn: AsyncConnection, index_id: int, tokens: Sequence[bytes]) -> int:
    """Delete items by token; returns how many existed."""
    result = await conn.execute(
        items.delete().where(items.c.index_id == index_id, _any_token(tokens))
    )
    return int(result.rowcount)


async def count_items(conn: AsyncConnection, index_id: int) -> int:
    """Number of live items in an index."""
    result = await conn.execute(
        select(func.count()).select_from(items).where(items.c.index_id == index_id)
    )
    return int(result.scalar_one())


async def stream_items(
    conn: AsyncConnection, index_id: int, page_size: int = 2048
) -> AsyncIterator[list[ItemRow]]:
    """Every live item of an index, in pages, by keyset pagination on the id token."""
    after = b""
    while True:
        result = await conn.execute(
            select(*_COLUMNS)
            .where(items.c.index_id == index_id, items.c.id_token > after)
            .order_by(items.c.id_token)
            .limit(page_size)
        )
        page = [ItemRow(*r) for r in result]
        if not page:
            return
        yield page
        after = page[-1].id_token
