"""Concurrent upserts and deletes of the same ids, as the official client's own
concurrency test makes them: every request succeeds, and what remains is what
some write left, counted right."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.support.app_client import app_client

DIMENSION = 8
IDS = [f"c{i}" for i in range(40)]


@pytest.fixture
async def raw_client(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees a 500 as a response instead of the app's exception."""
    async with app_client(settings, api_key=api_key, raise_app_exceptions=False) as http:
        yield http


def _batch(ids: list[str], writer: int) -> dict[str, Any]:
    # Every component of a writer's vectors is its number: a stored vector says who wrote it.
    vectors = np.full((len(ids), DIMENSION), writer, dtype="<f4")
    return {"ids": ids, "vectors_b64": base64.b64encode(vectors.tobytes()).decode(),
            "dimension": DIMENSION, "metadata": None, "contents": None}


async def _write_storm(
    http: httpx.AsyncClient, index: dict[str, Any], rounds: int
) -> list[httpx.Response]:
    """`rounds` rounds of 6 upserts and 6 deletes at once, over overlapping slices of IDS."""
    rng = random.Random(7)
    responses: list[httpx.Response] = []
    for round_no in range(rounds):
        calls = []
        for k in range(6):
            start = rng.randrange(0, len(IDS) - 20)
            ids = IDS[start:start + 20]
            rng.shuffle(ids)
            writer = round_no * 10 + k + 1
            calls.append(http.post("/vectors/upsert_binary",
                                   json={**index, "batch": _batch(ids, writer)}))
            calls.append(http.post("/vectors/delete", json={**index, "ids": ids[:10]}))
        responses.extend(await asyncio.gather(*calls))
    return responses


async def test_concurrent_upserts_and_deletes_of_the_same_ids_all_succeed(
    raw_client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    index = {"index_name": index_name, "index_key": index_key}
    created = await raw_client.post("/indexes/create", json={**index, "dimension": DIMENSION})
    assert created.status_code == 200, created.text

    responses = await _write_storm(raw_client, index, rounds=5)

    failed = [(r.request.url.path, r.status_code, r.text) for r in responses if r.is_error]
    assert failed == []


async def test_after_concurrent_writes_the_count_matches_the_items_left(
    raw_client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    index = {"index_name": index_name, "index_key": index_key}
    await raw_client.post("/indexes/create", json={**index, "dimension": DIMENSION})

    await _write_storm(raw_client, index, rounds=3)

    ids = (await raw_client.post("/vectors/list_ids", json=index)).json()["ids"]
    count = (await raw_client.post("/vectors/num_vectors", json=index)).json()["result"]
    assert count == len(ids)
    got = (await raw_client.post("/vectors/get", json={**index, "ids": IDS})).json()["results"]
    assert sorted(r["id"] for r in got) == sorted(ids)
    for item in got:
        # Each left item holds one writer's whole vector, never a mix of two writes.
        assert len(set(item["vector"])) == 1 and item["vector"][0] >= 1


async def test_the_last_write_of_an_id_wins(
    raw_client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    index = {"index_name": index_name, "index_key": index_key}
    await raw_client.post("/indexes/create", json={**index, "dimension": DIMENSION})
    await _write_storm(raw_client, index, rounds=1)

    await raw_client.post("/vectors/delete", json={**index, "ids": IDS[:5]})
    await raw_client.post("/vectors/upsert_binary",
                          json={**index, "batch": _batch(IDS[5:10], 99)})

    got = (await raw_client.post("/vectors/get", json={**index, "ids": IDS[:10]})).json()
    assert [r["id"] for r in got["results"]] == IDS[5:10]
    assert all(r["vector"] == [99.0] * DIMENSION for r in got["results"])
