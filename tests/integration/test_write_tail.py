"""The write tail: small writes into a trained index land in one tail block that
every query scans, stay bounded, and a fold moves them into their lists."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.engine.tail import fold_tail
from app.ivf.blocks import TAIL_LIST_NO
from app.ivf.distance import Metric
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex, open_index
from app.store import blocks as block_repo
from tests.support.app_client import app_client

DIMENSION = 8


@pytest.fixture
def tail_settings(settings: Settings) -> Settings:
    """No background fold (the tests fold explicitly), a small hard bound."""
    return settings.model_copy(update={
        "tail_fold_blocks": 10_000, "tail_fold_entries": 10_000,
        "tail_max_blocks": 4, "tail_max_entries": 100,
    })


@pytest.fixture
async def tail_client(tail_settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(tail_settings, api_key=api_key) as http:
        yield http


@pytest.fixture
async def ctx(tail_settings: Settings) -> AsyncIterator[ServiceContext]:
    context = ServiceContext.build(tail_settings)
    yield context
    await context.close()


def _items(vectors: np.ndarray, first: int) -> list[dict[str, Any]]:
    return [{"id": f"v{first + n}", "vector": v.tolist()} for n, v in enumerate(vectors)]


async def _trained(client: httpx.AsyncClient, vectors: np.ndarray) -> dict[str, Any]:
    body = {"index_name": f"tail-{secrets.token_hex(6)}", "index_key": secrets.token_hex(32)}
    created = await client.post("/indexes/create", json={**body, "dimension": DIMENSION})
    assert created.status_code == 200, created.text
    upserted = await client.post("/vectors/upsert", json={**body, "items": _items(vectors, 0)})
    assert upserted.is_success, upserted.text
    assert (await client.post("/indexes/train", json={**body, "n_lists": 8})).is_success
    return body


async def _opened(ctx: ServiceContext, body: dict[str, Any]) -> OpenIndex:
    async with ctx.db.transaction() as conn:
        return await open_index(
            conn, ctx, "tests", body["index_name"], bytes.fromhex(body["index_key"])
        )


async def _tail_blocks(ctx: ServiceContext, opened: OpenIndex) -> list[block_repo.BlockRow]:
    version = opened.row.active_version
    async with ctx.db.transaction() as conn:
        return await block_repo.blocks_of_list(
            conn, opened.row.id, version, opened.cipher.list_tag(version, TAIL_LIST_NO)
        )


async def _top1(client: httpx.AsyncClient, body: dict[str, Any], vector: np.ndarray) -> str:
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": vector.tolist(), "top_k": 1}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["id"])


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((440, DIMENSION)).astype(np.float32)


async def test_a_small_upsert_into_a_trained_index_is_one_tail_block(
    tail_client: httpx.AsyncClient, ctx: ServiceContext, vectors: np.ndarray
) -> None:
    body = await _trained(tail_client, vectors[:400])
    items = _items(vectors[400:410], 400)
    assert (await tail_client.post("/vectors/upsert", json={**body, "items": items})).is_success

    opened = await _opened(ctx, body)
    tail = await _tail_blocks(ctx, opened)
    assert [block.n_vectors for block in tail] == [10]
    assert (opened.row.tail_blocks, opened.row.tail_entries) == (1, 10)


async def test_queries_and_gets_find_items_in_the_tail(
    tail_client: httpx.AsyncClient, vectors: np.ndarray
) -> None:
    body = await _trained(tail_client, vectors[:400])
    items = _items(vectors[400:410], 400)
    assert (await tail_client.post("/vectors/upsert", json={**body, "items": items})).is_success

    for n in range(400, 410):
        assert await _top1(tail_client, body, vectors[n]) == f"v{n}"
    got = await tail_client.post(
        "/vectors/get", json={**body, "ids": ["v400", "v409"], "include": ["vector"]}
    )
    assert [item["vector"] for item in got.json()["results"]] == [
        pytest.approx(vectors[400].tolist()), pytest.approx(vectors[409].tolist())
    ]


async def test_the_tail_stops_at_its_bound_and_later_writes_go_to_the_lists(
    tail_client: httpx.AsyncClient, ctx: ServiceContext, vectors: np.ndarray
) -> None:
    body = await _trained(tail_client, vectors[:400])
    for first in range(400, 430, 5):  # six writes, the tail takes four blocks
        items = _items(vectors[first : first + 5], first)
        assert (await tail_client.post("/vectors/upsert", json={**body, "items": items})).is_success

    opened = await _opened(ctx, body)
    assert len(await _tail_blocks(ctx, opened)) == 4
    assert (opened.row.tail_blocks, opened.row.tail_entries) == (4, 20)
    for n in range(400, 430):
        assert await _top1(tail_client, body, vectors[n]) == f"v{n}"


async def test_a_fold_moves_live_tail_entries_into_their_lists(
    tail_client: httpx.AsyncClient, ctx: ServiceContext, vectors: np.ndarray
) -> None:
    body = await _trained(tail_client, vectors[:400])
    for first in range(400, 420, 5):
        items = _items(vectors[first : first + 5], first)
        assert (await tail_client.post("/vectors/upsert", json={**body, "items": items})).is_success
    deleted = await tail_client.post("/vectors/delete", json={**body, "ids": ["v401", "v417"]})
    assert deleted.is_success
    opened = await _opened(ctx, body)
    stats_before = await _stats(ctx, opened)

    async with maintenance_lock(ctx, opened.row.id, wait_s=60):
        assert await fold_tail(ctx, opened.cipher, Metric.EUCLIDEAN) == 18

    after = await _opened(ctx, body)
    assert await _tail_blocks(ctx, after) == []
    assert (after.row.tail_blocks, after.row.tail_entries) == (0, 0)
    assert after.row.layout_epoch > opened.row.layout_epoch
    assert (await _stats(ctx, after)).entries == stats_before.entries - 2
    for n in set(range(400, 420)) - {401, 417}:
        assert await _top1(tail_client, body, vectors[n]) == f"v{n}"
    got = await tail_client.post(
        "/vectors/get", json={**body, "ids": ["v400", "v401"], "include": ["vector"]}
    )
    assert [item["id"] for item in got.json()["results"]] == ["v400"]
    assert got.json()["results"][0]["vector"] == pytest.approx(vectors[400].tolist())


async def _stats(ctx: ServiceContext, opened: OpenIndex) -> block_repo.VersionStats:
    async with ctx.db.transaction() as conn:
        return await block_repo.version_stats(conn, opened.row.id, opened.row.active_version)


async def test_exact_search_after_thousands_of_one_item_upserts_and_folds(
    settings: Settings, api_key: str, vectors: np.ndarray
) -> None:
    """With the default tail and background folds, 1,000 one-item upserts leave a
    bounded number of blocks per list and the tail within its bound, and a
    search of every list returns exactly the exact nearest neighbours."""
    more = np.random.default_rng(8).standard_normal((1_000, DIMENSION)).astype(np.float32)
    async with app_client(settings, api_key=api_key) as client:
        body = await _trained(client, vectors[:400])
        for n, vector in enumerate(more):
            items = [{"id": f"w{n}", "vector": vector.tolist()}]
            assert (await client.post("/vectors/upsert", json={**body, "items": items})).is_success
        everything = np.concatenate([vectors[:400], more])
        ids = [f"v{n}" for n in range(400)] + [f"w{n}" for n in range(1_000)]
        for query in more[::50]:
            response = await client.post("/vectors/query", json={
                **body, "query_vectors": query.tolist(), "top_k": 5, "n_probes": 8,
            })
            exact = np.argsort(np.linalg.norm(everything - query, axis=1))[:5]
            assert [hit["id"] for hit in response.json()["results"]] == [ids[i] for i in exact]
    context = ServiceContext.build(settings)
    try:
        opened = await _opened(context, body)
        assert opened.row.tail_blocks <= settings.tail_max_blocks
        async with maintenance_lock(context, opened.row.id, wait_s=60):
            await fold_tail(context, opened.cipher, Metric.EUCLIDEAN)
            await compact_if_needed(context, opened.cipher)
        stats = await _stats(context, await _opened(context, body))
        # Eight lists of about 175 entries: full blocks need 8; the tiered merges
        # leave at most 3 small blocks per size class and list.
        assert stats.blocks <= 8 * 3 * 4
    finally:
        await context.close()
