"""/v1/vectors/query_metadata: items by metadata alone, from the encrypted metadata
index when the filter has an equality, by scanning otherwise; always exactly the
items the filter matches, as they are now."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from app.engine.postings import MERGE_CHUNKS, merge_terms
from app.filters import compile_filter
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.store.tables import indexes, metadata_postings

COLORS = ("red", "green", "blue")


def _metadata(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"color": COLORS[i % 3], "bucket": i % 10, "tags": [f"t{i % 4}"]}
    if i % 5:
        meta["rank"] = i % 7
    return meta


async def _upsert(client: httpx.AsyncClient, body: dict[str, Any], first: int, count: int,
                  metadata: Any = _metadata) -> None:
    rng = np.random.default_rng(first)
    items = [{"id": f"v{i}", "vector": rng.normal(size=4).tolist(), "metadata": metadata(i)}
             for i in range(first, first + count)]
    response = await client.post("/vectors/upsert", json={**body, "items": items})
    assert response.status_code == 200, response.text


async def _ids(client: httpx.AsyncClient, body: dict[str, Any], **request: Any) -> list[str]:
    response = await client.post("/vectors/query_metadata", json={**body, **request})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ids"] == [r["id"] for r in answer["results"]]
    assert answer["count"] == len(answer["ids"])
    return answer["ids"]  # type: ignore[no-any-return]


def _expected(filters: dict[str, Any], metadata: dict[str, dict[str, Any]]) -> set[str]:
    match = compile_filter(filters)
    return {item_id for item_id, meta in metadata.items() if match(meta)}


@pytest.mark.parametrize("filters", [
    {"color": "red"},
    {"bucket": {"$in": [1, 2]}},
    {"color": "blue", "bucket": 4},
    {"$or": [{"color": "red"}, {"tags": "t1"}]},
    {"tags": "t3", "rank": {"$gte": 3}},
    {"rank": {"$lt": 2}},
    {"bucket": {"$ne": 3}},
    {},
])
async def test_query_metadata_returns_exactly_the_matching_items(
    client: httpx.AsyncClient, index: dict[str, Any], filters: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 120)
    found = await _ids(client, index, filters=filters)
    assert len(found) == len(set(found))
    assert set(found) == _expected(filters, {f"v{i}": _metadata(i) for i in range(120)})


async def test_an_overwritten_item_matches_only_its_new_metadata(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 30)
    await _upsert(client, index, 0, 1, metadata=lambda i: {"color": "violet"})
    assert "v0" not in await _ids(client, index, filters={"color": "red"})
    assert await _ids(client, index, filters={"color": "violet"}) == ["v0"]


async def test_a_deleted_item_is_never_returned(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 30)
    deleted = await client.post("/vectors/delete", json={**index, "ids": ["v0", "v3"]})
    assert deleted.is_success, deleted.text
    found = await _ids(client, index, filters={"color": "red"})
    assert set(found) == {f"v{i}" for i in range(6, 30, 3)}


async def test_order_by_sorts_missing_values_last_in_both_directions(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 20)
    ranks = {f"v{i}": i % 7 for i in range(20) if i % 5}
    missing = sorted(f"v{i}" for i in range(20) if not i % 5)
    up = await _ids(client, index, order_by="rank")
    down = await _ids(client, index, order_by={"rank": -1})
    assert [ranks[i] for i in up[: len(ranks)]] == sorted(ranks.values())
    assert [ranks[i] for i in down[: len(ranks)]] == sorted(ranks.values(), reverse=True)
    assert up[len(ranks):] == missing == down[len(ranks):]


async def test_top_k_applies_after_ordering(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 20)
    everything = await _ids(client, index, order_by="rank", ascending=False)
    assert await _ids(client, index, order_by="rank", ascending=False, top_k=3) == everything[:3]


async def test_a_field_declared_not_filterable_cannot_be_filtered_on(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = {"index_name": index_name, "index_key": index_key}
    created = await client.post("/indexes/create", json={
        **body, "dimension": 4, "metadata_schema": {"secret": {"filterable": False}},
    })
    assert created.status_code == 200, created.text
    await _upsert(client, body, 0, 5, metadata=lambda i: {"secret": i, "open": i})
    refused = await client.post("/vectors/query_metadata",
                                json={**body, "filters": {"secret": 1}})
    assert refused.status_code == 400
    assert "filterable" in refused.json()["detail"]
    assert await _ids(client, body, filters={"open": 1}) == ["v1"]


async def test_a_bad_filter_is_a_400(client: httpx.AsyncClient, index: dict[str, Any]) -> None:
    response = await client.post("/vectors/query_metadata",
                                 json={**index, "filters": {"x": {"$foo": 1}}})
    assert response.status_code == 400
    assert "$foo" in response.json()["detail"]


async def test_many_small_writes_of_one_term_are_merged_after_a_read(
    client: httpx.AsyncClient, index: dict[str, Any], settings: Any
) -> None:
    for first in range(0, 2 * MERGE_CHUNKS, 1):
        await _upsert(client, index, first, 1, metadata=lambda i: {"color": "red", "n": i})
    await client.post("/vectors/delete", json={**index, "ids": ["v0"]})
    expected = {f"v{i}" for i in range(1, 2 * MERGE_CHUNKS)}
    assert set(await _ids(client, index, filters={"color": "red"})) == expected
    ctx = ServiceContext.build(settings)
    try:
        async with ctx.db.transaction() as conn:
            opened = await open_index(conn, ctx, "tests", index["index_name"],
                                      bytes.fromhex(index["index_key"]))
        token = opened.cipher.term_token("color", b"sred")
        await merge_terms(ctx, opened.cipher, [token])
        async with ctx.db.transaction() as conn:
            chunks = (await conn.execute(
                select(func.count(), func.sum(metadata_postings.c.n_seqs)).where(
                    metadata_postings.c.index_id == opened.row.id,
                    metadata_postings.c.token == token,
                )
            )).one()
    finally:
        await ctx.close()
    assert tuple(chunks) == (1, len(expected))
    assert set(await _ids(client, index, filters={"color": "red"})) == expected


async def test_concurrent_queries_and_writes_see_each_item_once(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await _upsert(client, index, 0, 60)

    async def rewrite() -> None:
        for _ in range(5):
            await _upsert(client, index, 0, 60)

    async def read() -> list[list[str]]:
        return [await _ids(client, index, filters={"color": "green"}) for _ in range(10)]

    _, answers = await asyncio.gather(rewrite(), read())
    for found in answers:
        assert sorted(found) == sorted(f"v{i}" for i in range(1, 60, 3))


async def test_an_index_without_complete_postings_answers_by_scanning(
    client: httpx.AsyncClient, index: dict[str, Any], settings: Any
) -> None:
    # What migration 0008 leaves: items written before the metadata index existed.
    await _upsert(client, index, 0, 30)
    ctx = ServiceContext.build(settings)
    try:
        async with ctx.db.transaction() as conn:
            opened = await open_index(conn, ctx, "tests", index["index_name"],
                                      bytes.fromhex(index["index_key"]))
            await conn.execute(
                delete(metadata_postings).where(metadata_postings.c.index_id == opened.row.id)
            )
            await conn.execute(
                update(indexes).where(indexes.c.id == opened.row.id).values(postings_complete=False)
            )
    finally:
        await ctx.close()
    found = await _ids(client, index, filters={"color": "red"})
    assert set(found) == {f"v{i}" for i in range(0, 30, 3)}
