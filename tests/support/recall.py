"""Recall of an index over HTTP against exact numpy search, and the calls that set
one up: create, upsert float32 rows as `v<i>`, compare top-10 with brute force."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np


async def create_index(client: httpx.AsyncClient, index_name: str, index_key: str,
                       dimension: int = 32, metric: str = "euclidean") -> dict[str, Any]:
    """Create an index; returns the base body of every call on it."""
    body = {"index_name": index_name, "index_key": index_key}
    response = await client.post(
        "/indexes/create", json={**body, "dimension": dimension, "metric": metric}
    )
    assert response.status_code == 200
    return body


async def upsert_vectors(
    client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray, start: int = 0
) -> httpx.Response:
    """Upsert rows as items `v<start>`, `v<start+1>`, ... through /vectors/upsert_binary."""
    batch = {"ids": [f"v{i}" for i in range(start, start + len(vectors))],
             "vectors_b64": base64.b64encode(vectors.astype("<f4").tobytes()).decode(),
             "dimension": vectors.shape[1]}
    response = await client.post("/vectors/upsert_binary", json={**body, "batch": batch})
    assert response.status_code == 200, response.text
    return response


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Row numbers of each query's k nearest vectors by brute force."""
    if metric == "cosine":
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return np.argsort(-(q @ v.T), axis=1)[:, :k]
    if metric == "dotproduct":
        return np.argsort(-(queries.astype(np.float64) @ vectors.astype(np.float64).T),
                          axis=1)[:, :k]
    d = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1)[:, :k]


async def recall_at_10(client: httpx.AsyncClient, body: dict[str, Any], vectors: np.ndarray,
                       queries: np.ndarray, metric: str) -> float:
    """Mean share of each query's exact top 10 that one batch query returns."""
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": queries.tolist(), "top_k": 10}
    )
    assert response.status_code == 200, response.text
    truth = exact_top(vectors, queries, 10, metric)
    found = [{int(r["id"][1:]) for r in results} for results in response.json()["results"]]
    overlaps = [len(f & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]
    return float(np.mean(overlaps))
