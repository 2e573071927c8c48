"""Each process caches index views; a write through another process is seen at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store.blocks import SearchView
from app.store.db import Database


async def _top(client: httpx.AsyncClient, index: dict[str, Any]) -> list[str]:
    response = await client.post(
        "/vectors/query", json={**index, "query_vectors": [5, 5, 5, 5], "top_k": 3}
    )
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


async def test_writes_through_another_process_are_visible_to_cached_queries(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": [
        {"id": "far", "vector": [0, 0, 0, 0]}]})
    assert await _top(client, index) == ["far"]
    await second_process.post("/vectors/upsert", json={**index, "items": [
        {"id": "near", "vector": [5, 5, 5, 5]}]})
    assert await _top(client, index) == ["near", "far"]
    await second_process.post("/vectors/delete", json={**index, "ids": ["near"]})
    assert await _top(client, index) == ["far"]


async def _vector_of(client: httpx.AsyncClient, index: dict[str, Any], item_id: str) -> Any:
    response = await client.post(
        "/vectors/get", json={**index, "ids": [item_id], "include": ["vector"]}
    )
    assert response.status_code == 200, response.text
    return [item["vector"] for item in response.json()["results"]]


async def test_gets_through_a_cached_view_see_writes_made_elsewhere(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": [
        {"id": "moved", "vector": [1, 1, 1, 1]}]})
    assert await _top(client, index) == ["moved"]
    assert await _vector_of(client, index, "moved") == [[1, 1, 1, 1]]
    await second_process.post("/vectors/upsert", json={**index, "items": [
        {"id": "moved", "vector": [2, 2, 2, 2]}]})
    assert await _vector_of(client, index, "moved") == [[2, 2, 2, 2]]
    await second_process.post("/vectors/delete", json={**index, "ids": ["moved"]})
    assert await _vector_of(client, index, "moved") == []


async def test_an_index_deleted_elsewhere_is_not_found(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    assert await _top(client, index) == []
    await second_process.post("/indexes/delete", json=index)
    response = await client.post("/vectors/query", json={**index, "query_vectors": [1, 1, 1, 1]})
    assert response.status_code == 404
    response = await client.post("/vectors/get", json={**index, "ids": ["any"]})
    assert response.status_code == 404


async def test_a_training_run_elsewhere_switches_cached_queries_to_the_new_version(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = [{"id": f"p{n}", "vector": [float(n % 50), float(n // 50), 0, 1]} for n in range(400)]
    await client.post("/vectors/upsert", json={**index, "items": items})
    before = await _top(client, index)
    assert (await second_process.post("/indexes/train", json={**index, "n_lists": 8})).is_success
    assert await _top(client, index) == before
    described = await client.post("/indexes/describe", json=index)
    assert described.json()["is_trained"]


async def test_queries_racing_writes_through_two_processes_all_succeed(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    async def writer(http: httpx.AsyncClient, offset: int) -> None:
        for n in range(10):
            items = [{"id": f"w{offset}-{n}-{k}", "vector": [float(k), n, offset, 1]}
                     for k in range(20)]
            assert (await http.post("/vectors/upsert", json={**index, "items": items})).is_success

    async def reader(http: httpx.AsyncClient) -> None:
        for _ in range(20):
            assert len(await _top(http, index)) <= 3

    await asyncio.gather(
        writer(client, 1), writer(second_process, 2),
        reader(client), reader(second_process), reader(client),
    )
    count = (await client.post("/vectors/num_vectors", json=index)).json()["result"]
    assert count == 400
    assert await _top(client, index) == await _top(second_process, index)


async def _listing(db: Database, name: str, base: SearchView | None = None) -> SearchView:
    async with db.transaction() as conn:
        view = await block_repo.search_view(conn, "tests", name, base)
    assert view is not None
    return view


def _same_listing(extended: SearchView, fresh: SearchView) -> bool:
    return (
        extended.signature == fresh.signature
        and sorted(extended.blocks) == sorted(fresh.blocks)
        and extended.n_entries == fresh.n_entries
        and all(
            sorted(extended.blocks_of_lists([ref.list_tag]))
            == sorted(fresh.blocks_of_lists([ref.list_tag]))
            for ref in fresh.blocks
        )
    )


async def test_a_stale_view_extended_with_later_writes_equals_a_fresh_read(
    client: httpx.AsyncClient, db: Database, index: dict[str, Any]
) -> None:
    items = [{"id": f"a{n}", "vector": [n, n % 3, n % 5, 1]} for n in range(40)]
    await client.post("/vectors/upsert", json={**index, "items": items})
    assert (await client.post("/indexes/train", json={**index, "n_lists": 4})).is_success
    stale = await _listing(db, index["index_name"])
    await client.post("/vectors/upsert", json={**index, "items": [
        {"id": "b", "vector": [1, 2, 3, 4]}, {"id": "c", "vector": [4, 3, 2, 1]}]})
    await client.post("/vectors/upsert", json={**index, "items": [
        {"id": f"d{n}", "vector": [n, 1, 1, 1]} for n in range(300)]})

    extended = await _listing(db, index["index_name"], base=stale)
    assert len(extended.blocks) > len(stale.blocks)
    assert _same_listing(extended, await _listing(db, index["index_name"]))


async def test_a_view_older_than_a_rewrite_is_read_in_full(
    client: httpx.AsyncClient, db: Database, index: dict[str, Any]
) -> None:
    for round_no in range(3):
        await client.post("/vectors/upsert", json={**index, "items": [
            {"id": f"a{n}", "vector": [n + round_no, 0, 0, 0]} for n in range(20)]})
    stale = await _listing(db, index["index_name"])
    async with db.transaction() as conn:  # a rewrite: reserve ids, drop blocks
        await index_repo.reserve_ids(conn, stale.row.id, 1)
        await block_repo.delete_blocks(conn, stale.row.id, [stale.blocks[0].block_id])

    extended = await _listing(db, index["index_name"], base=stale)
    assert stale.blocks[0] not in extended.blocks
    assert _same_listing(extended, await _listing(db, index["index_name"]))
