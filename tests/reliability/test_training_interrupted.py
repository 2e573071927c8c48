"""A service process killed in the middle of a training run: the index keeps
answering on its previous version, and a new run succeeds and leaves no debris."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
import numpy as np
from sklearn.datasets import make_blobs
from sqlalchemy import text

from app.store.db import Database
from tests.support.process import running_service

N, DIMENSION = 20_000, 32


ENTRIES_BY_VERSION = text(
    "SELECT version, sum(n_vectors)::bigint FROM vector_blocks "
    "WHERE index_id = (SELECT id FROM indexes WHERE name = :name) GROUP BY version"
)


def _top1(http: httpx.Client, index: dict[str, str], vector: np.ndarray) -> str:
    response = http.post("/vectors/query", json={
        **index, "query_vectors": vector.tolist(), "top_k": 1, "n_probes": 4,
    })
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["id"])


async def test_a_training_run_killed_midway_leaves_the_index_serving_its_previous_version(
    database_url: str, api_key: str, db: Database
) -> None:
    name = f"interrupt-{secrets.token_hex(4)}"
    index = {"index_name": name, "index_key": secrets.token_hex(32)}
    vectors, _ = make_blobs(N, DIMENSION, centers=40, random_state=3)
    vectors = vectors.astype(np.float32)
    probes = [0, 4_321, 19_999]
    headers = {"X-API-Key": api_key}

    with running_service(database_url, auto_train="false") as first, httpx.Client(
        base_url=first.url, headers=headers, timeout=120
    ) as http:
        assert http.post("/indexes/create", json={**index, "dimension": DIMENSION}).is_success
        for start in range(0, N, 2_000):
            items = [{"id": str(i), "vector": vectors[i].tolist()}
                     for i in range(start, start + 2_000)]
            assert http.post("/vectors/upsert", json={**index, "items": items}).is_success
        assert http.post("/indexes/train", json={**index, "n_lists": 8}).is_success

        # A slow run: many lists (training also stops when a pass barely improves
        # the centroids, so a long run needs much to do), small pages.
        outcome: dict[str, Any] = {}

        def slow_train() -> None:
            try:
                outcome["status"] = httpx.post(
                    f"{first.url}/indexes/train", headers=headers, timeout=300,
                    json={**index, "n_lists": 4_000, "max_iters": 100, "tolerance": 0,
                          "batch_size": 256},
                ).status_code
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        trainer = threading.Thread(target=slow_train, daemon=True)
        trainer.start()
        deadline = time.monotonic() + 30
        while name not in http.get("/indexes/training-status").json()["training_indexes"]:
            assert time.monotonic() < deadline, "the slow run never showed as training"
            time.sleep(0.05)
        time.sleep(1.0)
        first.kill()
        trainer.join(timeout=30)
    assert "status" not in outcome, "the run finished before the kill; make it slower"

    with running_service(database_url, auto_train="false") as second, httpx.Client(
        base_url=second.url, headers=headers, timeout=120
    ) as http:
        assert name not in http.get("/indexes/training-status").json()["training_indexes"]
        described = http.post("/indexes/describe", json=index).json()
        assert described["is_trained"] and described["n_lists"] == 8
        assert [_top1(http, index, vectors[p]) for p in probes] == [str(p) for p in probes]

        assert http.post("/indexes/train", json={**index, "n_lists": 16}).is_success
        assert http.post("/indexes/describe", json=index).json()["n_lists"] == 16
        assert [_top1(http, index, vectors[p]) for p in probes] == [str(p) for p in probes]

    async with db.transaction() as conn:
        rows = (await conn.execute(ENTRIES_BY_VERSION, {"name": name})).all()
    versions = {int(version): int(entries) for version, entries in rows}
    assert list(versions.values()) == [N], versions
