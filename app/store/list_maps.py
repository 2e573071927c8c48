"""Repository of list-map pages: per index version, encrypted (sequence, list) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import copy_rows
from app.store.tables import list_maps


class ListMapPage(NamedTuple):
    """One stored page: the sequence range it covers and its ciphertext."""

    first_seq: int
    last_seq: int
    ciphertext: bytes


async def insert_pages(
    conn: AsyncConnection, index_id: int, version: int, pages: Sequence[ListMapPage]
) -> None:
    """Store pages of a version's map (by COPY, inside the caller's transaction)."""
    if pages:
        await copy_rows(
            conn, list_maps, ("index_id", "version", *ListMapPage._fields),
            [(index_id, version, *page) for page in pages],
        )


async def delete_version(conn: AsyncConnection, index_id: int, version: int) -> None:
    """Drop the map of one version (leftovers of an interrupted run)."""
    await conn.execute(
        list_maps.delete().where(list_maps.c.index_id == index_id, list_maps.c.version == version)
    )


async def delete_other_versions(conn: AsyncConnection, index_id: int, keep: int) -> None:
    """Drop the maps of every version but `keep`."""
    await conn.execute(
        list_maps.delete().where(list_maps.c.index_id == index_id, list_maps.c.version != keep)
    )
