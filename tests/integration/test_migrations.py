"""Alembic revisions: they build, remove and rebuild the schema, and match the models."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.localpg import LocalPostgres
from app.store.tables import metadata


async def _inspect(url: str, check: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(check)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _drift(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _comments(conn: Connection) -> dict[str, str | None]:
    inspector = inspect(conn)
    return {name: inspector.get_table_comment(name)["text"] for name in _tables(conn)}


async def test_upgrade_downgrade_upgrade_on_an_empty_database(pg_cluster: LocalPostgres) -> None:
    url = pg_cluster.create_database("migrations_round_trip")
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _inspect(url, _tables) == {
        "api_keys", "indexes", "items", "vector_blocks", "block_parts", "index_centroids",
        "list_maps", "metadata_postings",
    }
    await asyncio.to_thread(migrate.downgrade, url)
    assert await _inspect(url, _tables) == set()
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _inspect(url, _drift) == []


async def _run(url: str, statement: str, **params: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return result.all() if result.returns_rows else None
    finally:
        await engine.dispose()


async def test_block_ciphertexts_move_to_parts_and_back_unchanged(
    pg_cluster: LocalPostgres,
) -> None:
    url = pg_cluster.create_database("migrations_block_parts")
    await asyncio.to_thread(migrate.upgrade, url, "0004")
    ciphertext = os.urandom(20_001)
    await _run(
        url,
        "INSERT INTO vector_blocks (index_id, block_id, version, list_tag, n_vectors, ciphertext) "
        "VALUES (1, 7, 0, '\\x00', 3, :ciphertext)",
        ciphertext=ciphertext,
    )
    await asyncio.to_thread(migrate.upgrade, url)
    parts = await _run(url, "SELECT part, data FROM block_parts ORDER BY part")
    assert [p for p, _ in parts] == [0, 1, 2]
    assert b"".join(d for _, d in parts) == ciphertext
    await asyncio.to_thread(migrate.downgrade, url, "0004")
    assert await _run(url, "SELECT ciphertext FROM vector_blocks") == [(ciphertext,)]


async def test_every_table_explains_itself_to_a_dba(database_url: str) -> None:
    comments = await _inspect(database_url, _comments)
    assert comments and all(comments.values())
