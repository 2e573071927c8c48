"""Alembic revisions: they build, remove and rebuild the schema, and match the models."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
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
        "api_keys", "indexes", "items", "vector_blocks", "index_centroids", "list_maps"
    }
    await asyncio.to_thread(migrate.downgrade, url)
    assert await _inspect(url, _tables) == set()
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _inspect(url, _drift) == []


async def test_every_table_explains_itself_to_a_dba(database_url: str) -> None:
    comments = await _inspect(database_url, _comments)
    assert comments and all(comments.values())
