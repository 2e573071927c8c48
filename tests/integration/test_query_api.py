"""/v1/vectors/query and /query_binary: exact search before training, include and filters."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import pytest


async def _create(
    client: httpx.AsyncClient, name: str, key: str, dimension: int, metric: str
) -> dict[str, Any]:
    body = {"index_name": name, "index_key": key}
    response = await client.post(
        "/indexes/create", json={**body, "dimension": dimension, "metric": metric}
    )
    assert response.status_code == 200, response.text
    return body


def _brute_force(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    v, q = vectors.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        return 1 - (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))  # type: ignore[no-any-return]
    squared = ((v - q) ** 2).sum(axis=1)
    return squared if metric == "squared_euclidean" else np.sqrt(squared)  # type: ignore[no-any-return]


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
async def test_untrained_search_equals_numpy_brute_force(
    client: httpx.AsyncClient, index_name: str, index_key: str, metric: str
) -> None:
    rng = np.random.default_rng(42)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(5, 32)).astype(np.float32)
    body = await _create(client, index_name, index_key, 32, metric)
    for start in range(0, 3000, 1000):
        ids = [f"v{i}" for i in range(start, start + 1000)]
        rows = vectors[start : start + 1000]
        batch = {"ids": ids, "vectors_b64": base64.b64encode(rows.tobytes()).decode(),
                 "dimension": 32}
        await client.post("/vectors/upsert_binary", json={**body, "batch": batch})
    response = await client.post(
        "/vectors/query",
        json={**body, "query_vectors": queries.tolist(), "top_k": 10, "include": ["distance"]},
    )
    assert response.status_code == 200, response.text
    for query, results in zip(queries, response.json()["results"], strict=True):
        expected = _brute_force(vectors, query, metric)
        order = np.argsort(expected)[:10]
        assert [r["id"] for r in results] == [f"v{i}" for i in order]
        assert np.allclose([r["distance"] for r in results], expected[order], rtol=1e-6)


@pytest.fixture
async def small(client: httpx.AsyncClient, index: dict[str, Any]) -> dict[str, Any]:
    """Index `index` filled with five items along the first axis."""
    items = [
        {"id": "a", "vector": [0, 0, 0, 0], "contents": "alpha",
         "metadata": {"genre": "jazz", "year": 1990, "tags": ["x", "y"], "loc": {"city": "Oslo"}}},
        {"id": "b", "vector": [1, 0, 0, 0], "contents": "beta",
         "metadata": {"genre": "rock", "year": 2001}},
        {"id": "c", "vector": [2, 0, 0, 0], "metadata": {"genre": "jazz", "year": 2010}},
        {"id": "d", "vector": [3, 0, 0, 0], "metadata": {"genre": "pop", "year": 2020}},
        {"id": "e", "vector": [4, 0, 0, 0]},
    ]
    response = await client.post("/vectors/upsert", json={**index, "items": items})
    assert response.status_code == 200, response.text
    return index


async def _ids(client: httpx.AsyncClient, body: dict[str, Any], **query: Any) -> list[str]:
    response = await client.post(
        "/vectors/query", json={**body, "query_vectors": [0, 0, 0, 0], **query}
    )
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


async def test_single_query_returns_ids_only_by_default(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/query", json={**small, "query_vectors": [0.9, 0, 0, 0], "top_k": 2}
    )
    assert response.json() == {"results": [{"id": "b"}, {"id": "a"}]}


async def test_include_selects_distance_metadata_contents_and_vector(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/query",
        json={**small, "query_vectors": [1, 0, 0, 0], "top_k": 1,
              "include": ["distance", "metadata", "contents", "vector"]},
    )
    assert response.json() == {"results": [{
        "id": "b", "distance": 0.0, "metadata": {"genre": "rock", "year": 2001},
        "contents": "beta", "vector": [1.0, 0.0, 0.0, 0.0],
    }]}


async def test_batch_query_returns_one_result_list_per_vector(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/query",
        json={**small, "query_vectors": [[0, 0, 0, 0], [4, 0, 0, 0]], "top_k": 2},
    )
    assert response.json() == {"results": [[{"id": "a"}, {"id": "b"}], [{"id": "e"}, {"id": "d"}]]}


async def test_query_binary_nests_batches_and_flattens_a_single_row(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    def batch(rows: list[list[float]]) -> dict[str, Any]:
        data = np.asarray(rows, dtype="<f4").tobytes()
        return {**small, "batch": {"vectors_b64": base64.b64encode(data).decode(),
                                   "dimension": 4}, "top_k": 1}

    two = await client.post("/vectors/query_binary", json=batch([[0, 0, 0, 0], [4, 0, 0, 0]]))
    assert two.json() == {"results": [[{"id": "a"}], [{"id": "e"}]]}
    one = await client.post("/vectors/query_binary", json=batch([[3, 0, 0, 0]]))
    assert one.json() == {"results": [{"id": "d"}]}


async def test_top_k_larger_than_the_index_returns_everything(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    assert await _ids(client, small, top_k=50) == ["a", "b", "c", "d", "e"]


async def test_deleted_and_overwritten_items_never_appear(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    await client.post("/vectors/delete", json={**small, "ids": ["a"]})
    await client.post(
        "/vectors/upsert", json={**small, "items": [{"id": "b", "vector": [100, 0, 0, 0]}]}
    )
    assert await _ids(client, small, top_k=3) == ["c", "d", "e"]
    assert await _ids(client, small, top_k=10) == ["c", "d", "e", "b"]


async def test_stale_entries_nearer_than_every_live_item_do_not_crowd_out_results(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    near = [{"id": f"n{i}", "vector": [i / 100, 0, 0, 0]} for i in range(40)]
    far = [{"id": f"f{i}", "vector": [100 + i, 0, 0, 0]} for i in range(20)]
    await client.post("/vectors/upsert", json={**index, "items": near + far})
    moved = [{"id": f"n{i}", "vector": [1000 + i, 0, 0, 0]} for i in range(30)]
    await client.post("/vectors/upsert", json={**index, "items": moved})
    assert await _ids(client, index, top_k=10) == [f"n{i}" for i in range(30, 40)]
    assert await _ids(client, index, top_k=12) == [f"n{i}" for i in range(30, 40)] + ["f0", "f1"]


async def test_query_on_an_empty_index_returns_no_results(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    assert await _ids(client, index) == []


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"genre": "jazz"}, ["a", "c"]),
        ({"genre": {"$eq": "jazz"}}, ["a", "c"]),
        ({"genre": {"$ne": "jazz"}}, ["b", "d", "e"]),
        ({"year": {"$gt": 2001}}, ["c", "d"]),
        ({"year": {"$gte": 2001}}, ["b", "c", "d"]),
        ({"year": {"$lt": 2001}}, ["a"]),
        ({"year": {"$lte": 2001}}, ["a", "b"]),
        ({"genre": {"$in": ["pop", "rock"]}}, ["b", "d"]),
        ({"genre": {"$nin": ["pop", "rock"]}}, ["a", "c", "e"]),
        ({"genre": {"$exists": False}}, ["e"]),
        ({"$and": [{"genre": "jazz"}, {"year": {"$gt": 2000}}]}, ["c"]),
        ({"$or": [{"genre": "pop"}, {"year": {"$lt": 2000}}]}, ["a", "d"]),
        ({"loc.city": "Oslo"}, ["a"]),
        ({"tags": "y"}, ["a"]),
    ],
)
async def test_metadata_filters_select_matching_items(
    client: httpx.AsyncClient, small: dict[str, Any], filters: dict[str, Any],
    expected: list[str],
) -> None:
    assert await _ids(client, small, filters=filters, top_k=10) == expected


async def test_filter_keeps_searching_past_the_first_candidates(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = [{"id": f"i{n}", "vector": [float(n), 0, 0, 0], "metadata": {"rare": n == 900}}
             for n in range(1000)]
    await client.post("/vectors/upsert", json={**index, "items": items})
    assert await _ids(client, index, filters={"rare": True}, top_k=3) == ["i900"]


async def test_unknown_filter_operator_is_a_bad_request(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/query",
        json={**small, "query_vectors": [0, 0, 0, 0], "filters": {"genre": {"$foo": 1}}},
    )
    assert response.status_code == 400
    assert "$foo" in response.json()["detail"]


async def test_query_dimension_mismatch_is_unprocessable(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post("/vectors/query", json={**small, "query_vectors": [1, 2]})
    assert response.status_code == 422
    assert "expected 4, got 2" in response.json()["detail"]


async def test_query_without_vectors_or_contents_is_a_bad_request(
    client: httpx.AsyncClient, small: dict[str, Any]
) -> None:
    response = await client.post("/vectors/query", json=small)
    assert response.status_code == 400
    assert "query_vectors or query_contents" in response.json()["detail"]


@pytest.mark.parametrize("top_k", [0, -1, 10_001])
async def test_out_of_range_top_k_is_unprocessable(
    client: httpx.AsyncClient, small: dict[str, Any], top_k: int
) -> None:
    response = await client.post(
        "/vectors/query", json={**small, "query_vectors": [0, 0, 0, 0], "top_k": top_k}
    )
    assert response.status_code == 422
