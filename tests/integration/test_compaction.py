"""Compaction drops stale block entries and merges fragments without changing results."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from app.config import Settings
from app.engine.blockstore import plan_blocks, seal_tagged
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.ivf.blocks import TAIL_LIST_NO
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex, open_index
from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store.tables import vector_blocks as vb
from tests.support.app_client import app_client

BLOCK = 16  # the least block_max_vectors settings allow


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    context = ServiceContext.build(settings)
    yield context
    await context.close()


@pytest.fixture
def small_blocks(settings: Settings) -> Settings:
    """Blocks of at most `BLOCK` vectors, and no training: one list throughout."""
    return settings.model_copy(update={"block_max_vectors": BLOCK, "auto_train": False})


@pytest.fixture
async def small_client(small_blocks: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(small_blocks, api_key=api_key) as http:
        yield http


@pytest.fixture
async def small_ctx(small_blocks: Settings) -> AsyncIterator[ServiceContext]:
    context = ServiceContext.build(small_blocks)
    yield context
    await context.close()


async def _open(ctx: ServiceContext, index: dict[str, Any]) -> OpenIndex:
    async with ctx.db.transaction() as conn:
        return await open_index(
            conn, ctx, "tests", index["index_name"], bytes.fromhex(index["index_key"])
        )


async def _stats(ctx: ServiceContext, index: dict[str, Any]) -> tuple[int, int, Any]:
    opened = await _open(ctx, index)
    async with ctx.db.transaction() as conn:
        stats = await block_repo.version_stats(conn, opened.row.id, opened.row.active_version)
    return stats.blocks, stats.entries, opened


async def _blocks(ctx: ServiceContext, opened: OpenIndex) -> dict[int, tuple[bytes, int]]:
    """The active version's blocks: id -> (list tag, entries)."""
    async with ctx.db.transaction() as conn:
        rows = await conn.execute(
            select(vb.c.block_id, vb.c.list_tag, vb.c.n_vectors).where(
                vb.c.index_id == opened.row.id, vb.c.version == opened.row.active_version
            )
        )
        return {int(i): (bytes(tag), int(n)) for i, tag, n in rows}


async def _compact(ctx: ServiceContext, opened: OpenIndex) -> int:
    async with maintenance_lock(ctx, opened.row.id, wait_s=60):
        return await compact_if_needed(ctx, opened.cipher)


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


async def test_small_writes_into_one_list_are_each_rewritten_once_per_size_class(
    client: httpx.AsyncClient, index: dict[str, Any], ctx: ServiceContext
) -> None:
    n_items = 200
    opened = await _open(ctx, index)
    rewritten = 0
    for n in range(n_items):
        item = {"id": f"s{n}", "vector": [float(n), 0, 0, 0]}
        assert (await client.post("/vectors/upsert", json={**index, "items": [item]})).is_success
        before = await _blocks(ctx, opened)
        await _compact(ctx, opened)  # as the background check would, after every write
        after = await _blocks(ctx, opened)
        rewritten += sum(size for i, (_, size) in after.items() if i not in before)
    while await _compact(ctx, opened):
        pass

    # Every entry starts in a block of one and leaves classes 0 (1-3), 1 (4-15)
    # and 2 (16-63) at most once each: 4 blocks of class 3 hold over 200. A
    # whole-list rewrite every few writes cost about 20 rewrites per entry.
    assert rewritten <= 3 * n_items
    small = Counter(
        (tag, (size.bit_length() - 1) // 2)  # floor(log4(size))
        for tag, size in (await _blocks(ctx, opened)).values()
        if size < ctx.settings.block_max_vectors
    )
    assert max(small.values()) <= 3
    ids = [f"s{n}" for n in range(n_items)]
    hits = await client.post(
        "/vectors/query", json={**index, "query_vectors": [0, 0, 0, 0], "top_k": n_items}
    )
    assert [hit["id"] for hit in hits.json()["results"]] == ids
    got = await client.post("/vectors/get", json={**index, "ids": ids, "include": ["vector"]})
    assert [item["vector"] for item in got.json()["results"]] == [
        [float(n), 0.0, 0.0, 0.0] for n in range(n_items)
    ]


async def test_tier_merges_leave_full_blocks_alone(
    small_client: httpx.AsyncClient, index: dict[str, Any], small_ctx: ServiceContext
) -> None:
    full = [{"id": f"f{n}", "vector": [float(n), 1, 0, 0]} for n in range(BLOCK)]
    await small_client.post("/vectors/upsert", json={**index, "items": full})
    for n in range(6):
        item = {"id": f"t{n}", "vector": [float(n), 2, 0, 0]}
        await small_client.post("/vectors/upsert", json={**index, "items": [item]})
    opened = await _open(small_ctx, index)
    before = await _blocks(small_ctx, opened)
    [full_id] = [i for i, (_, n) in before.items() if n == BLOCK]
    assert sorted(n for _, n in before.values()) == [1] * 6 + [BLOCK]

    assert await _compact(small_ctx, opened) == 1

    after = await _blocks(small_ctx, opened)
    assert after[full_id] == before[full_id]
    [(merged_id, (_, merged))] = [(i, b) for i, b in after.items() if i != full_id]
    assert merged == 6 and merged_id not in before
    ids = [item["id"] for item in full] + [f"t{n}" for n in range(6)]
    got = await small_client.post("/vectors/get", json={**index, "ids": ids})
    assert [item["id"] for item in got.json()["results"]] == ids


async def test_compaction_leaves_the_write_tail_to_its_fold(
    client: httpx.AsyncClient, index: dict[str, Any], ctx: ServiceContext, settings: Settings
) -> None:
    for n in range(4):
        item = {"id": f"w{n}", "vector": [float(n), 0, 0, 0]}
        await client.post("/vectors/upsert", json={**index, "items": [item]})
    opened = await _open(ctx, index)
    version = opened.row.active_version
    async with ctx.db.transaction() as conn:
        first = await index_repo.reserve_ids(conn, opened.row.id, 5)
        assert first is not None
        # Five one-entry blocks whose entries no item holds: stale, and small.
        seqs = np.arange(first, first + 5, dtype=np.int64)
        plans = plan_blocks(np.zeros(5, dtype=np.int64), seqs, 1, itertools.count(first))
        tail = seal_tagged(
            opened.cipher, version, plans,
            [opened.cipher.list_tag(version, TAIL_LIST_NO)] * len(plans),
            seqs, np.zeros((5, 4), dtype=np.float32),
        )
        await block_repo.insert_blocks(conn, opened.row.id, tail)
    tail_ids = {b.block_id for b in tail}

    # 5 stale entries of 9: the stale rule rewrites every list but the tail.
    assert await _compact(ctx, opened) == 1
    assert tail_ids <= set(await _blocks(ctx, opened))
    # Tolerating them, the tier rule finds the tail's five small blocks alone.
    tolerant = ServiceContext.build(settings.model_copy(update={"compaction_stale_ratio": 0.9}))
    try:
        assert await _compact(tolerant, opened) == 0
    finally:
        await tolerant.close()
    blocks = await _blocks(ctx, opened)
    assert tail_ids <= set(blocks)
    assert sorted(n for _, n in blocks.values()) == [1] * 5 + [4]
