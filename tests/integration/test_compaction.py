"""Compaction drops stale block entries and merges fragments without changing results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.services.compaction import compact_if_needed
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.services.locking import maintenance_lock
from app.store import blocks as block_repo


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    context = ServiceContext.build(settings)
    yield context
    await context.close()


async def _stats(ctx: ServiceContext, index: dict[str, Any]) -> tuple[int, int, Any]:
    async with ctx.db.transaction() as conn:
        opened = await open_index(
            conn, ctx, "tests", index["index_name"], bytes.fromhex(index["index_key"])
        )
        stats = await block_repo.version_stats(conn, opened.row.id, opened.row.active_version)
    return stats.blocks, stats.entries, opened


async def test_compaction_removes_stale_entries_and_keeps_results(
    client: httpx.AsyncClient, index: dict[str, Any], ctx: ServiceContext
) -> None:
    for round_no in range(12):
        items = [{"id": f"i{n}", "vector": [float(n + round_no), 0, 0, 0]} for n in range(40)]
        assert (await client.post("/vectors/upsert", json={**index, "items": items})).is_success
    await client.post("/vectors/delete", json={**index, "ids": ["i0", "i1"]})
    before = await client.post(
        "/vectors/query", json={**index, "query_vectors": [20, 0, 0, 0], "top_k": 5}
    )
    blocks, entries, opened = await _stats(ctx, index)
    assert entries == 12 * 40 and blocks == 12

    async with maintenance_lock(ctx, opened.row.id, wait_s=60):
        assert await compact_if_needed(ctx, opened.cipher) == 1

    blocks, entries, _ = await _stats(ctx, index)
    assert (blocks, entries) == (1, 38)
    after = await client.post(
        "/vectors/query", json={**index, "query_vectors": [20, 0, 0, 0], "top_k": 5}
    )
    assert after.json() == before.json()
    assert (await client.post("/vectors/num_vectors", json=index)).json() == {"result": 38}
