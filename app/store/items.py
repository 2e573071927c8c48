"""Repository of item rows: (index, id token) -> (write sequence, ciphertext)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import NamedTuple

import asyncpg
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import copy_rows, driver_connection
from app.store.list_maps import ListMapPage
from app.store.tables import items


class ItemRow(NamedTuple):
    """An item as stored: its token, current write sequence and payload ciphertext."""

    id_token: bytes
    seq: int
    payload: bytes


_PRIMARY_KEY = f"pk_{items.name}"


class ItemsExist(Exception):
    """An insert met an item already stored under one of its tokens; the
    transaction is aborted."""


async def insert_items(
    conn: AsyncConnection,
    index_id: int,
    tokens: Sequence[bytes],
    seqs: Sequence[int],
    payloads: Sequence[bytes],
) -> None:
    """Insert new items by COPY; raises ItemsExist if any token is already stored.

    COPY checks uniqueness while it inserts. Measured on this table's shape,
    it took about a quarter less of the backend's time per row than an INSERT
    from arrays (itself about a fifth cheaper than `replace_items`' ON
    CONFLICT), and asyncpg encodes its rows without the per-element checks
    it makes on array parameters.
    """
    try:
        await copy_rows(
            conn, items, ("index_id", "id_token", "seq", "payload"),
            [(index_id, *row) for row in zip(tokens, seqs, payloads, strict=True)],
        )
    except asyncpg.UniqueViolationError as exc:
        if not is_duplicate_item(exc):
            raise
        raise ItemsExist from exc


def is_duplicate_item(exc: asyncpg.UniqueViolationError) -> bool:
    """Whether the violation is of an item stored under the same token."""
    return bool(exc.constraint_name == _PRIMARY_KEY)


# Sent through asyncpg directly: SQLAlchemy's statement handling and per-element
# array processing took 1-2 ms per 1,000 items in profiles of the upsert.
_REPLACE_BATCH = """
    WITH written AS (
        INSERT INTO items (index_id, id_token, seq, payload)
        SELECT $1, t.id_token, t.seq, t.payload
        FROM unnest($2::bytea[], $3::int8[], $4::bytea[]) AS t(id_token, seq, payload)
        ON CONFLICT (index_id, id_token)
        DO UPDATE SET seq = EXCLUDED.seq, payload = EXCLUDED.payload
        RETURNING xmax = 0 AS inserted
    )
    UPDATE indexes SET n_items = n_items + (SELECT count(*) FILTER (WHERE inserted) FROM written)
    WHERE id = $1
    RETURNING n_items
"""


async def replace_items(
    conn: AsyncConnection,
    index_id: int,
    tokens: Sequence[bytes],
    seqs: Sequence[int],
    payloads: Sequence[bytes],
) -> int:
    """Insert items, overwriting any stored under the same tokens, and count the
    new ones, in one statement; returns the index's live item count.

    ON CONFLICT probes the primary key for every row before inserting it, and
    so finds an existing row whatever the table's statistics say. A DELETE of
    the tokens followed by an insert followed them instead: cached while a new
    index was small, its plan kept scanning every row of the index (measured:
    140 ms per 256 items at 30,000 items).
    """
    driver = await driver_connection(conn)
    n_items = await driver.fetchval(_REPLACE_BATCH, index_id, tokens, seqs, payloads)
    return int(n_items)


_COLUMNS = (items.c.id_token, items.c.seq, items.c.payload)


class TokenLookup(NamedTuple):
    """Items found by token, with what a get reads in the same round trip."""

    signature: tuple[int, int]  # the index's (next_seq, active_version), as SearchView's
    rows: list[ItemRow]
    map_pages: list[ListMapPage]  # of the active version, covering the items' sequences


# Sent through asyncpg directly: every get runs one of them. The map page
# covering each item comes along: after a training run, a get finds moved
# vectors through it, and a second round trip (through SQLAlchemy) cost about
# 1 ms of a 5 ms get of 10 ids.
_BY_TOKENS = """
    SELECT x.next_seq, x.active_version, it.id_token, it.seq, it.payload{map_columns}
    FROM indexes x
    LEFT JOIN items it ON it.index_id = x.id AND it.id_token = ANY($2::bytea[]){map_join}
    WHERE x.id = $1
"""
_MAP_COLUMNS = ", m.first_seq, m.last_seq, m.ciphertext"
_MAP_JOIN = """
    LEFT JOIN LATERAL (
        SELECT first_seq, last_seq, ciphertext FROM list_maps
        WHERE index_id = x.id AND version = x.active_version AND first_seq <= it.seq
        ORDER BY first_seq DESC LIMIT 1
    ) m ON m.last_seq >= it.seq"""
_BY_TOKENS_ALONE = _BY_TOKENS.format(map_columns="", map_join="")
_BY_TOKENS_WITH_MAP = _BY_TOKENS.format(map_columns=_MAP_COLUMNS, map_join=_MAP_JOIN)


async def items_by_tokens(
    conn: AsyncConnection, index_id: int, tokens: Sequence[bytes], *, with_map_pages: bool
) -> TokenLookup | None:
    """The live items among `tokens` (absent ones are simply missing), and with
    `with_map_pages` the active version's list-map pages covering them; None if
    the index is gone."""
    driver = await driver_connection(conn)
    records = await driver.fetch(
        _BY_TOKENS_WITH_MAP if with_map_pages else _BY_TOKENS_ALONE, index_id, list(tokens)
    )
    if not records:
        return None
    pages = {
        r["first_seq"]: ListMapPage(r["first_seq"], r["last_seq"], r["ciphertext"])
        for r in records if with_map_pages and r["first_seq"] is not None
    }
    return TokenLookup(
        (int(records[0]["next_seq"]), int(records[0]["active_version"])),
        [ItemRow(r["id_token"], r["seq"], r["payload"]) for r in records if r["seq"] is not None],
        list(pages.values()),
    )


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


# Sent through asyncpg directly, like the upsert's statements.
_DELETE_COUNTED = """
    WITH gone AS (
        DELETE FROM items WHERE index_id = $1 AND id_token = ANY($2::bytea[]) RETURNING 1
    )
    UPDATE indexes SET n_items = n_items - (SELECT count(*) FROM gone)
    WHERE id = $1
    RETURNING (SELECT count(*) FROM gone) AS deleted, n_items
"""


class Deletion(NamedTuple):
    """What a delete of items did."""

    deleted: int  # items that existed
    n_items: int  # the index's live items after it


async def delete_items(conn: AsyncConnection, index_id: int, tokens: Sequence[bytes]) -> Deletion:
    """Delete items by token and count them off the index, in one statement.

    The caller holds the index row's lock (app.store.indexes, lock order).
    """
    driver = await driver_connection(conn)
    record = await driver.fetchrow(_DELETE_COUNTED, index_id, list(tokens))
    if record is None:
        raise AssertionError("the index row is locked by the deleting transaction")
    return Deletion(int(record["deleted"]), int(record["n_items"]))




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


async def live_seqs_packed(conn: AsyncConnection, index_id: int) -> bytes:
    """Every live write sequence of an index, packed as big-endian int64s in ascending order."""
    result = await conn.execute(
        text(
            "SELECT coalesce(string_agg(int8send(seq), ''::bytea ORDER BY seq), ''::bytea) "
            "FROM items WHERE index_id = :index_id"
        ),
        {"index_id": index_id},
    )
    return bytes(result.scalar_one())


async def live_among(conn: AsyncConnection, index_id: int, seqs: Collection[int]) -> set[int]:
    """The sequences among `seqs` that an item still holds."""
    result = await conn.execute(
        select(items.c.seq).where(
            items.c.index_id == index_id,
            items.c.seq == func.any(bindparam("seqs", list(seqs), type_=ARRAY(BIGINT))),
        )
    )
    return set(result.scalars())


# Sent through asyncpg directly: every query runs it, and SQLAlchemy's
# statement and row handling cost more than the round trip.
_CHECKED = """
    SELECT x.next_seq, x.active_version, it.id_token, it.seq, it.payload
    FROM indexes x
    LEFT JOIN items it ON it.index_id = x.id AND it.seq = ANY($2::int8[])
    WHERE x.id = $1
"""


async def items_by_seqs_checked(
    conn: AsyncConnection, index_id: int, seqs: Collection[int]
) -> tuple[tuple[int, int] | None, list[ItemRow]]:
    """Like items_by_seqs, plus the index's (next_seq, active_version) in the same
    snapshot (None if the index is gone), to check a cached view in the same round trip."""
    driver = await driver_connection(conn)
    result = await driver.fetch(_CHECKED, index_id, list(seqs))
    if not result:
        return None, []
    signature = (int(result[0]["next_seq"]), int(result[0]["active_version"]))
    return signature, [
        ItemRow(r["id_token"], r["seq"], r["payload"]) for r in result if r["seq"] is not None
    ]
