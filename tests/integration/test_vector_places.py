"""Each vector is stored once, in a block of its list: reads find it wherever it has moved."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from app.config import Settings
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.engine.places import MAP_PAGE_ENTRIES
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.store import items as item_repo
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.recall import create_index, upsert_vectors

DIMENSION = 16


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    context = ServiceContext.build(settings)
    yield context
    await context.close()


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(600, DIMENSION)).astype(np.float32)


@pytest.fixture
async def body(
    client: httpx.AsyncClient, index_name: str, index_key: str, vectors: np.ndarray
) -> dict[str, Any]:
    created = await create_index(client, index_name, index_key, dimension=DIMENSION)
    for start in range(0, len(vectors), 100):
        await upsert_vectors(client, created, vectors[start : start + 100], start)
    return created


async def _stored_vectors(client: httpx.AsyncClient, body: dict[str, Any], n: int) -> np.ndarray:
    ids = [f"v{i}" for i in range(n)]
    response = await client.post(
        "/vectors/get", json={**body, "ids": ids, "include": ["vector"]}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == ids
    return np.asarray([r["vector"] for r in results], dtype=np.float32)


async def test_item_rows_hold_no_copy_of_the_vector(
    body: dict[str, Any], db: Database, index_name: str
) -> None:
    async with db.transaction() as conn:
        longest = (await conn.execute(text(
            "SELECT max(octet_length(payload)) FROM items JOIN indexes ON indexes.id = index_id "
            "WHERE indexes.name = :name"
        ), {"name": index_name})).scalar_one()
    assert longest < DIMENSION * 4


async def test_get_returns_each_vector_as_upserted(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray
) -> None:
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), vectors)


async def test_get_finds_vectors_that_training_runs_moved_to_other_lists(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray
) -> None:
    for n_lists in (8, 12):
        assert (await client.post("/indexes/train", json={**body, "n_lists": n_lists})).is_success
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), vectors)


async def test_get_finds_vectors_upserted_into_a_trained_index(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray
) -> None:
    assert (await client.post("/indexes/train", json={**body, "n_lists": 8})).is_success
    fresh = vectors[:50] + 1
    await upsert_vectors(client, body, fresh)
    expected = np.concatenate([fresh, vectors[50:]])
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), expected)


async def test_get_after_searches_cached_the_view_finds_moved_and_fresh_vectors(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray
) -> None:
    assert (await client.post("/indexes/train", json={**body, "n_lists": 8})).is_success
    query = {**body, "query_vectors": vectors[0].tolist(), "top_k": 1}
    assert (await client.post("/vectors/query", json=query)).is_success
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), vectors)
    fresh = vectors[:50] + 1
    await upsert_vectors(client, body, fresh)
    expected = np.concatenate([fresh, vectors[50:]])
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), expected)
    assert (await client.post("/vectors/query", json=query)).is_success
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), expected)


async def test_get_finds_moved_vectors_across_many_list_map_pages(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    many = np.random.default_rng(11).normal(size=(2_500, DIMENSION)).astype(np.float32)
    created = await create_index(client, index_name, index_key, dimension=DIMENSION)
    for start in range(0, len(many), 500):
        await upsert_vectors(client, created, many[start : start + 500], start)
    assert (await client.post("/indexes/train", json={**created, "n_lists": 10})).is_success
    assert np.array_equal(await _stored_vectors(client, created, len(many)), many)


async def test_get_finds_vectors_whose_block_compaction_merged_away(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray, ctx: ServiceContext
) -> None:
    await client.post("/vectors/delete", json={**body, "ids": [f"v{i}" for i in range(0, 600, 2)]})
    async with ctx.db.transaction() as conn:
        opened = await open_index(
            conn, ctx, "tests", body["index_name"], bytes.fromhex(body["index_key"])
        )
    async with maintenance_lock(ctx, opened.row.id, wait_s=60):
        assert await compact_if_needed(ctx, opened.cipher) == 1
    odd = [f"v{i}" for i in range(1, 600, 2)]
    response = await client.post("/vectors/get", json={**body, "ids": odd, "include": ["vector"]})
    got = np.asarray([r["vector"] for r in response.json()["results"]], dtype=np.float32)
    assert np.array_equal(got, vectors[1::2])


async def test_get_on_a_cached_view_racing_a_compaction_finds_every_vector(
    body: dict[str, Any], vectors: np.ndarray, ctx: ServiceContext, settings: Settings,
    api_key: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a block cache, the get reads its blocks after the statement that
    # checked its cached view, and a compaction deletes them in between.
    uncached = settings.model_copy(update={"block_cache_mb": 0})
    async with app_client(uncached, api_key=api_key) as process:
        ids = [f"v{i}" for i in range(1, 600, 2)]
        await process.post("/vectors/delete", json={**body, "ids": ids[::2]})
        query = {**body, "query_vectors": vectors[3].tolist(), "top_k": 1}
        assert (await process.post("/vectors/query", json=query)).json()["results"] == [
            {"id": "v3"}
        ]
        async with ctx.db.transaction() as conn:
            opened = await open_index(
                conn, ctx, "tests", body["index_name"], bytes.fromhex(body["index_key"])
            )
        looked_up = item_repo.items_by_tokens
        compactions: list[int] = []

        async def then_compact(*args: Any, **kwargs: Any) -> item_repo.TokenLookup | None:
            found = await looked_up(*args, **kwargs)
            if not compactions:
                async with maintenance_lock(ctx, opened.row.id, wait_s=60):
                    compactions.append(await compact_if_needed(ctx, opened.cipher))
            return found

        monkeypatch.setattr(item_repo, "items_by_tokens", then_compact)
        response = await process.post(
            "/vectors/get", json={**body, "ids": ids, "include": ["vector"]}
        )
    assert compactions == [1]
    kept = [int(r["id"][1:]) for r in response.json()["results"]]
    assert kept == list(range(3, 600, 4))
    got = np.asarray([r["vector"] for r in response.json()["results"]], dtype=np.float32)
    assert np.array_equal(got, vectors[kept])


async def test_get_still_finds_vectors_when_a_list_map_is_lost(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray, db: Database,
    index_name: str,
) -> None:
    assert (await client.post("/indexes/train", json={**body, "n_lists": 8})).is_success
    async with db.transaction() as conn:
        removed = await conn.execute(text(
            "DELETE FROM list_maps USING indexes WHERE indexes.id = index_id "
            "AND indexes.name = :name"
        ), {"name": index_name})
    assert removed.rowcount == math.ceil(len(vectors) / MAP_PAGE_ENTRIES)
    assert np.array_equal(await _stored_vectors(client, body, len(vectors)), vectors)


async def test_query_hits_carry_their_stored_vectors(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray
) -> None:
    response = await client.post("/vectors/query", json={
        **body, "query_vectors": vectors[42].tolist(), "top_k": 3,
        "include": ["vector", "distance"],
    })
    hits = response.json()["results"]
    assert hits[0]["id"] == "v42"
    for hit in hits:
        position = int(hit["id"][1:])
        assert np.array_equal(np.asarray(hit["vector"], dtype=np.float32), vectors[position])


async def test_deleting_an_index_deletes_its_list_maps_and_block_parts(
    client: httpx.AsyncClient, body: dict[str, Any], db: Database, index_name: str
) -> None:
    assert (await client.post("/indexes/train", json={**body, "n_lists": 8})).is_success
    async with db.transaction() as conn:
        index_id = (await conn.execute(
            text("SELECT id FROM indexes WHERE name = :name"), {"name": index_name}
        )).scalar_one()
    assert (await client.post("/indexes/delete", json=body)).is_success
    async with db.transaction() as conn:
        left = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM list_maps WHERE index_id = :id), "
            "(SELECT count(*) FROM block_parts WHERE index_id = :id)"
        ), {"id": index_id})).one()
    assert tuple(left) == (0, 0)


async def test_no_block_part_outlives_its_block_across_retrainings(
    client: httpx.AsyncClient, body: dict[str, Any], db: Database
) -> None:
    for n_lists in (8, 12):
        assert (await client.post("/indexes/train", json={**body, "n_lists": n_lists})).is_success
    async with db.transaction() as conn:
        orphans = (await conn.execute(text(
            "SELECT count(*) FROM block_parts p WHERE NOT EXISTS (SELECT 1 FROM vector_blocks b "
            "WHERE b.index_id = p.index_id AND b.block_id = p.block_id)"
        ))).scalar_one()
    assert orphans == 0
