"""/v1/indexes/train, training-status, IVF search, auto-training and races with upserts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sqlalchemy import text

from app.config import Settings
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.recall import create_index, recall_at_10, upsert_vectors


def _clustered(n: int, dimension: int = 32, seed: int = 0) -> np.ndarray:
    vectors, _ = make_blobs(n, dimension, centers=max(4, n // 200), cluster_std=1.5,
                            random_state=seed)
    return np.asarray(vectors, dtype=np.float32)


async def test_too_few_vectors_to_train_is_unprocessable(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, _clustered(30))
    response = await client.post("/indexes/train", json={**body, "n_lists": 16})
    assert response.status_code == 422
    assert "at least 32 vectors" in response.json()["detail"]


async def test_train_of_an_unknown_index_is_not_found(
    client: httpx.AsyncClient, index_key: str
) -> None:
    body = {"index_name": "nope", "index_key": index_key}
    response = await client.post("/indexes/train", json=body)
    assert response.status_code == 404


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
async def test_trained_index_keeps_recall_at_10_above_095_with_auto_probes(
    client: httpx.AsyncClient, index_name: str, index_key: str, metric: str
) -> None:
    vectors = _clustered(6000)
    body = await create_index(client, index_name, index_key, metric=metric)
    for start in range(0, len(vectors), 1000):
        await upsert_vectors(client, body, vectors[start : start + 1000], start)
    trained = await client.post("/indexes/train", json={
        **body, "n_lists": None, "batch_size": None, "max_iters": None, "tolerance": None,
        "max_memory": None,
    })
    assert trained.json() == {"status": "success",
                              "message": f"Index '{index_name}' trained successfully"}
    info = (await client.post("/indexes/describe", json=body)).json()
    assert info["is_trained"] and info["n_lists"] > 1
    queries = _clustered(6000, seed=1)[:100]
    assert await recall_at_10(client, body, vectors, queries, metric) >= 0.95


async def test_upserts_and_deletes_after_training_are_searched(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = _clustered(2000)
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, vectors)
    await client.post("/indexes/train", json={**body, "n_lists": 20})
    extra = _clustered(50, seed=5) + 100
    await upsert_vectors(client, body, extra, start=5000)
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": extra[7].tolist(), "top_k": 1}
    )
    assert response.json()["results"] == [{"id": "v5007"}]
    await client.post("/vectors/delete", json={**body, "ids": ["v5007"]})
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": extra[7].tolist(), "top_k": 1}
    )
    assert response.json()["results"] != [{"id": "v5007"}]
    assert (await client.post("/vectors/num_vectors", json=body)).json() == {"result": 2049}


async def test_retraining_replaces_the_version_and_drops_old_blocks(
    client: httpx.AsyncClient, index_name: str, index_key: str, db: Database
) -> None:
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, _clustered(1000))
    await client.post("/indexes/train", json={**body, "n_lists": 10})
    await client.post("/indexes/train", json={**body, "n_lists": 12})
    assert (await client.post("/indexes/describe", json=body)).json()["n_lists"] == 12
    async with db.transaction() as conn:
        versions = (await conn.execute(text(
            "SELECT DISTINCT b.version FROM vector_blocks b JOIN indexes i ON i.id = b.index_id "
            "WHERE i.name = :n"), {"n": index_name})).scalars().all()
    assert versions == [2]


async def test_max_memory_too_small_is_unprocessable(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, _clustered(1000))
    response = await client.post(
        "/indexes/train", json={**body, "n_lists": 10, "max_memory": 1, "batch_size": 1_000_000}
    )
    assert response.status_code == 422
    assert "max_memory" in response.json()["detail"]


async def test_training_within_max_memory_streams_pages(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = _clustered(3000)
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, vectors)
    response = await client.post(
        "/indexes/train", json={**body, "n_lists": 16, "max_memory": 8, "batch_size": 256}
    )
    assert response.status_code == 200, response.text
    assert await recall_at_10(client, body, vectors, vectors[:50] + 0.01, "euclidean") >= 0.95


async def test_training_status_reports_the_threshold(client: httpx.AsyncClient) -> None:
    status = (await client.get("/indexes/training-status")).json()
    assert status["training_indexes"] == [] or isinstance(status["training_indexes"], list)
    assert status["retrain_threshold"] == 10_000


async def test_upserts_racing_a_training_run_are_never_lost_nor_their_vectors(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = _clustered(12_000)
    body = await create_index(client, index_name, index_key)
    await upsert_vectors(client, body, vectors[:6000])

    async def writer(start: int) -> None:
        for offset in range(start, start + 1500, 250):
            await upsert_vectors(client, body, vectors[offset : offset + 250], offset)

    train = asyncio.create_task(client.post("/indexes/train", json={**body, "n_lists": 40}))
    await asyncio.gather(*(writer(s) for s in range(6000, 12_000, 1500)))
    assert (await train).status_code == 200
    ids = (await client.post("/vectors/list_ids", json=body)).json()
    assert ids["count"] == 12_000 and len(set(ids["ids"])) == 12_000
    sample = np.arange(0, 12_000, 97)
    response = await client.post("/vectors/query", json={
        **body, "query_vectors": vectors[sample].tolist(), "top_k": 1, "n_probes": 40,
    })
    assert [r[0]["id"] for r in response.json()["results"]] == [f"v{i}" for i in sample]
    for start in range(0, 12_000, 1000):
        got = await client.post("/vectors/get", json={
            **body, "ids": [f"v{i}" for i in range(start, start + 1000)], "include": ["vector"],
        })
        stored = np.asarray([r["vector"] for r in got.json()["results"]], dtype=np.float32)
        assert np.array_equal(stored, vectors[start : start + 1000])


@pytest.fixture
async def eager_client(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that auto-trains at 500 vectors."""
    eager = settings.model_copy(update={"auto_train_threshold": 500})
    async with app_client(eager, api_key=api_key) as http:
        yield http


async def test_ids_repeated_in_one_upsert_count_once_towards_the_threshold(
    eager_client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = await create_index(eager_client, index_name, index_key)
    vectors = _clustered(600)
    batch = {"ids": [f"v{i % 300}" for i in range(600)],
             "vectors_b64": base64.b64encode(vectors.astype("<f4").tobytes()).decode(),
             "dimension": vectors.shape[1]}
    response = await eager_client.post("/vectors/upsert_binary", json={**body, "batch": batch})
    assert response.json() == {"status": "success", "message": "Upserted 300 vectors"}
    assert (await eager_client.post("/vectors/num_vectors", json=body)).json() == {"result": 300}


async def test_upsert_past_the_threshold_triggers_background_training(
    eager_client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = await create_index(eager_client, index_name, index_key)
    first = await upsert_vectors(eager_client, body, _clustered(400))
    assert "training_triggered" not in first.json()
    second = await upsert_vectors(eager_client, body, _clustered(200, seed=3), start=400)
    assert second.json()["training_triggered"] is True
    assert second.json()["training_message"] == "Index training has been triggered (vectors: 600)"
    for _ in range(200):
        if (await eager_client.post("/indexes/describe", json=body)).json()["is_trained"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("auto-training did not finish")
    assert (await eager_client.post("/vectors/num_vectors", json=body)).json() == {"result": 600}
