"""The dotproduct metric over HTTP: ranked by largest inner product, distance = -q.v,
exact before training, recall after it, and vectors returned as they were sent."""

from __future__ import annotations

import httpx
import numpy as np

from tests.support.recall import create_index, recall_at_10, upsert_vectors
from tests.support.vectors import varied_norms


async def test_an_index_created_with_dotproduct_describes_its_metric(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = await create_index(client, index_name, index_key, dimension=8, metric="dotproduct")
    info = (await client.post("/indexes/describe", json=body)).json()
    assert info["metric"] == "dotproduct"


async def test_the_openapi_schema_lists_dotproduct_among_the_metrics(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    metric = schema["components"]["schemas"]["Metric"]
    assert "dotproduct" in metric["enum"]
    assert "minus the inner product" in metric["description"]


async def test_untrained_search_ranks_by_largest_inner_product_with_minus_it_as_distance(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = varied_norms(3000, 32, seed=1)
    queries = varied_norms(5, 32, seed=2)
    body = await create_index(client, index_name, index_key, dimension=32, metric="dotproduct")
    for start in range(0, len(vectors), 1000):
        await upsert_vectors(client, body, vectors[start : start + 1000], start)
    response = await client.post(
        "/vectors/query",
        json={**body, "query_vectors": queries.tolist(), "top_k": 10, "include": ["distance"]},
    )
    assert response.status_code == 200, response.text
    for query, results in zip(queries, response.json()["results"], strict=True):
        expected = -(vectors.astype(np.float64) @ query.astype(np.float64))
        order = np.argsort(expected)[:10]
        assert [r["id"] for r in results] == [f"v{i}" for i in order]
        assert np.allclose([r["distance"] for r in results], expected[order], rtol=1e-6)


async def _trained(
    client: httpx.AsyncClient, index_name: str, index_key: str, vectors: np.ndarray
) -> dict[str, str]:
    body = await create_index(
        client, index_name, index_key, dimension=vectors.shape[1], metric="dotproduct"
    )
    for start in range(0, len(vectors), 1000):
        await upsert_vectors(client, body, vectors[start : start + 1000], start)
    trained = await client.post("/indexes/train", json=body)
    assert trained.status_code == 200, trained.text
    return body


async def test_trained_index_keeps_recall_at_10_above_095_with_auto_probes_on_varied_norms(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    rows = varied_norms(4100, 32)
    vectors, queries = rows[:4000], rows[4000:]  # held-out queries
    body = await _trained(client, index_name, index_key, vectors)
    info = (await client.post("/indexes/describe", json=body)).json()
    assert info["is_trained"] and info["n_lists"] > 1
    recall = await recall_at_10(client, body, vectors, queries, "dotproduct")
    print(f"dotproduct recall@10 on varied norms, {info['n_lists']} lists: {recall:.3f}")
    assert recall >= 0.95


async def test_training_within_max_memory_finds_the_largest_norm_in_a_streamed_pass(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    rows = varied_norms(3100, 32, seed=5)
    vectors, queries = rows[:3000], rows[3000:]
    body = await create_index(client, index_name, index_key, dimension=32, metric="dotproduct")
    await upsert_vectors(client, body, vectors)
    response = await client.post(
        "/indexes/train", json={**body, "max_memory": 8, "batch_size": 256}
    )
    assert response.status_code == 200, response.text
    assert await recall_at_10(client, body, vectors, queries, "dotproduct") >= 0.95


async def test_a_vector_longer_than_any_trained_one_is_found_after_training(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = varied_norms(1000, 16)
    body = await _trained(client, index_name, index_key, vectors)
    longest = float(np.linalg.norm(vectors, axis=1).max())
    direction = vectors[3] / np.linalg.norm(vectors[3])
    await upsert_vectors(client, body, (direction * 10 * longest)[np.newaxis], start=5000)
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": vectors[3].tolist(), "top_k": 1}
    )
    assert response.json()["results"] == [{"id": "v5000"}]


async def test_get_after_training_returns_the_vectors_as_sent(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    vectors = varied_norms(1000, 16)
    body = await _trained(client, index_name, index_key, vectors)
    response = await client.post(
        "/vectors/get", json={**body, "ids": ["v0", "v999"], "include": ["vector"]}
    )
    assert response.status_code == 200, response.text
    got = np.asarray([r["vector"] for r in response.json()["results"]], dtype=np.float32)
    assert got.shape == (2, 16)
    assert got.tobytes() == vectors[[0, 999]].tobytes()
