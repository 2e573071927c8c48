"""Blocks enter the process's cache as their write commits, so the first reads of
a new version, or of items just written, fetch no block from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.services import search
from app.services.context import ServiceContext
from app.services.indexes import open_index
from tests.support.app_client import app_client


@pytest.fixture
async def fresh_client(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new app instance: an empty block cache of its own."""
    async with app_client(settings, api_key=api_key) as http:
        yield http


async def _cache_counts(client: httpx.AsyncClient) -> tuple[float, float]:
    """(hits, misses) of the app's block cache."""
    response = await client.get("http://test/metrics")
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return (values["ciphervec_block_cache_hits_total"],
            values["ciphervec_block_cache_misses_total"])


def _items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"c{i}", "vector": [float(i % 20), float(i // 20), 0.0, 1.0]}
            for i in range(n)]


async def test_queries_after_a_training_run_fetch_no_block(
    fresh_client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await fresh_client.post("/vectors/upsert", json={**index, "items": _items(400)})
    trained = await fresh_client.post("/indexes/train", json={**index, "n_lists": 8})
    assert trained.status_code == 200
    hits, misses = await _cache_counts(fresh_client)
    for x in range(0, 20, 4):
        response = await fresh_client.post(
            "/vectors/query", json={**index, "query_vectors": [x, 10, 0, 1], "top_k": 5}
        )
        assert len(response.json()["results"]) == 5
    after_hits, after_misses = await _cache_counts(fresh_client)
    assert after_misses == misses
    assert after_hits > hits


async def test_reading_items_just_upserted_fetches_no_block(
    fresh_client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await fresh_client.post("/vectors/upsert", json={**index, "items": _items(50)})
    _, misses = await _cache_counts(fresh_client)
    response = await fresh_client.post(
        "/vectors/get", json={**index, "ids": ["c3", "c47"], "include": ["vector"]}
    )
    assert [item["vector"] for item in response.json()["results"]] == [
        [3.0, 0.0, 0.0, 1.0], [7.0, 2.0, 0.0, 1.0]
    ]
    assert (await _cache_counts(fresh_client))[1] == misses


async def test_a_search_after_compaction_fetches_no_block(
    client: httpx.AsyncClient, index: dict[str, Any], settings: Settings
) -> None:
    for _ in range(3):
        await client.post("/vectors/upsert", json={**index, "items": _items(40)})
    ctx = ServiceContext.build(settings)
    try:
        async with ctx.db.transaction() as conn:
            opened = await open_index(
                conn, ctx, "tests", index["index_name"], bytes.fromhex(index["index_key"])
            )
        async with maintenance_lock(ctx, opened.row.id, wait_s=60):
            assert await compact_if_needed(ctx, opened.cipher) == 1
        spec = search.QuerySpec(vectors=[[3.0, 0.0, 0.0, 1.0]], top_k=1)
        misses = ctx.blocks.misses
        hits = await search.query(
            ctx, "tests", index["index_name"], bytes.fromhex(index["index_key"]), spec
        )
        assert hits[0][0].item.id == "c3"
        assert ctx.blocks.misses == misses
    finally:
        await ctx.close()
