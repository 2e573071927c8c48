"""Repository of encrypted IVF centroids, one row per index version."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import index_centroids


async def insert_centroids(
    conn: AsyncConnection, index_id: int, version: int, n_lists: int, ciphertext: bytes
) -> None:
    """Store the centroids of a new version (replacing leftovers of an interrupted run)."""
    await conn.execute(
        index_centroids.delete().where(
            index_centroids.c.index_id == index_id, index_centroids.c.version == version
        )
    )
    await conn.execute(
        index_centroids.insert().values(
            index_id=index_id, version=version, n_lists=n_lists, ciphertext=ciphertext
        )
    )


async def centroids_ciphertext(conn: AsyncConnection, index_id: int, version: int) -> bytes | None:
    """The encrypted centroids of one version, if it has any."""
    result = await conn.execute(
        select(index_centroids.c.ciphertext).where(
            index_centroids.c.index_id == index_id, index_centroids.c.version == version
        )
    )
    return result.scalar_one_or_none()


async def delete_other_versions(conn: AsyncConnection, index_id: int, keep: int) -> None:
    """Drop the centroids of every version but `keep`."""
    await conn.execute(
        index_centroids.delete().where(
            index_centroids.c.index_id == index_id, index_centroids.c.version != keep
        )
    )
