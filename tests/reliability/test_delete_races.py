"""Deleting an index while it trains, compacts, takes writes and queries, and gains
users: every request in flight ends with success or 404, and once all of them
(and the background jobs) are done, no row of the index remains in any table."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from app.config import Settings
from app.store.db import Database
from tests.support.app_client import app_client

N, DIMENSION = 3_000, 16
TABLES = ("items", "vector_blocks", "block_parts", "index_centroids", "list_maps", "api_keys")


async def _rows_left(db: Database, index_id: int) -> dict[str, int]:
    counts = {}
    async with db.transaction() as conn:
        for table in TABLES:
            result = await conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE index_id = :id"),  # noqa: S608 - names above
                {"id": index_id},
            )
            counts[table] = int(result.scalar_one())
    return counts


async def _index_id(db: Database, name: str) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(
            text("SELECT id FROM indexes WHERE tenant = 'tests' AND name = :name"), {"name": name}
        )
        return int(result.scalar_one())


async def _writes_and_reads(
    http: httpx.AsyncClient, index: dict[str, Any], stop: asyncio.Event, worker: int
) -> list[httpx.Response]:
    """Small upserts, deletes, queries and new users, until `stop`."""
    rng = np.random.default_rng(worker)
    responses = []
    round_no = 0
    while not stop.is_set():
        ids = [f"w{worker}-{round_no}-{i}" for i in range(50)]
        items = [{"id": i, "vector": v} for i, v in zip(
            ids, rng.normal(size=(50, DIMENSION)).tolist(), strict=True)]
        responses.append(await http.post("/vectors/upsert", json={**index, "items": items}))
        responses.append(await http.post("/vectors/delete", json={**index, "ids": ids[:20]}))
        responses.append(await http.post("/vectors/query", json={
            **index, "query_vectors": rng.normal(size=DIMENSION).tolist(), "top_k": 5,
        }))
        responses.append(await http.post(f"/indexes/{index['index_name']}/users", json={
            "permissions": ["read"], "index_key": index["index_key"],
        }))
        round_no += 1
    return responses


@pytest.mark.parametrize("delete_after_s", [0.05, 0.3, 1.0])
async def test_deleting_an_index_amid_its_work_answers_200_or_404_and_leaves_no_rows(
    settings: Settings, api_key: str, db: Database, delete_after_s: float
) -> None:
    busy = settings.model_copy(update={"compaction_check_interval_s": 0.0})
    index = {"index_name": f"race-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    vectors = np.random.default_rng(1).normal(size=(N, DIMENSION))
    async with app_client(busy, api_key=api_key, raise_app_exceptions=False) as http:
        await http.post("/indexes/create", json={**index, "dimension": DIMENSION})
        items = [{"id": f"v{i}", "vector": v} for i, v in enumerate(vectors.tolist())]
        assert (await http.post("/vectors/upsert", json={**index, "items": items})).is_success
        index_id = await _index_id(db, index["index_name"])

        stop = asyncio.Event()
        train = asyncio.create_task(http.post("/indexes/train", json={**index, "n_lists": 16}))
        workers = [asyncio.create_task(_writes_and_reads(http, index, stop, w)) for w in range(3)]
        await asyncio.sleep(delete_after_s)
        deleted = await http.post("/indexes/delete", json=index)
        await asyncio.sleep(0.2)
        stop.set()
        responses = [await train] + [r for w in workers for r in await w]
        await asyncio.sleep(0.5)  # background compactions started before the delete end

    assert deleted.status_code == 200, deleted.text
    unexpected = [(r.request.url.path, r.status_code, r.text)
                  for r in responses if r.status_code not in (200, 404)]
    assert unexpected == []
    assert await _rows_left(db, index_id) == dict.fromkeys(TABLES, 0)
