"""/v1/vectors/* writes and point reads, and the bad input they refuse."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings


def _items(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"doc-{i}", "vector": [float(i), 1.0, 2.0, 3.0], "contents": f"text {i}",
         "metadata": {"n": i}}
        for i in range(start, start + n)
    ]


async def _count(client: httpx.AsyncClient, index: dict[str, Any]) -> int:
    response = await client.post("/vectors/num_vectors", json=index)
    assert response.status_code == 200, response.text
    return int(response.json()["result"])


async def test_upsert_then_get_returns_what_was_stored(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    upserted = await client.post("/vectors/upsert", json={**index, "items": _items(3)})
    assert upserted.json() == {"status": "success", "message": "Upserted 3 vectors"}
    got = await client.post("/vectors/get", json={**index, "ids": ["doc-2", "doc-0"]})
    assert got.json() == {"results": [
        {"id": "doc-2", "vector": [2.0, 1.0, 2.0, 3.0], "contents": "text 2",
         "metadata": {"n": 2}},
        {"id": "doc-0", "vector": [0.0, 1.0, 2.0, 3.0], "contents": "text 0",
         "metadata": {"n": 0}},
    ]}


async def test_get_leaves_out_unknown_ids_and_honours_include(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": _items(2)})
    got = await client.post(
        "/vectors/get", json={**index, "ids": ["nope", "doc-1"], "include": ["metadata"]}
    )
    assert got.json() == {"results": [{"id": "doc-1", "metadata": {"n": 1}}]}


async def test_item_without_contents_or_metadata_reads_back_empty(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post(
        "/vectors/upsert", json={**index, "items": [{"id": "bare", "vector": [0, 0, 0, 1]}]}
    )
    got = await client.post("/vectors/get", json={**index, "ids": ["bare"]})
    assert got.json()["results"] == [
        {"id": "bare", "vector": [0.0, 0.0, 0.0, 1.0], "contents": "", "metadata": {}}
    ]


async def test_upsert_overwrites_an_existing_id(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": _items(2)})
    replacement = [{"id": "doc-1", "vector": [9, 9, 9, 9], "contents": "new"}]
    await client.post("/vectors/upsert", json={**index, "items": replacement})
    got = (await client.post("/vectors/get", json={**index, "ids": ["doc-1"]})).json()
    assert got["results"][0]["vector"] == [9.0, 9.0, 9.0, 9.0]
    assert got["results"][0]["contents"] == "new"
    assert got["results"][0]["metadata"] == {}
    assert await _count(client, index) == 2


async def test_upsert_binary_stores_base64_float32_rows(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    vectors = np.arange(8, dtype="<f4").reshape(2, 4) / 3
    batch = {"ids": ["b0", "b1"], "vectors_b64": base64.b64encode(vectors.tobytes()).decode(),
             "dimension": 4, "metadata": [{"k": "v"}, None], "contents": None}
    response = await client.post("/vectors/upsert_binary", json={**index, "batch": batch})
    assert response.json()["message"] == "Upserted 2 vectors"
    got = (await client.post("/vectors/get", json={**index, "ids": ["b0", "b1"]})).json()
    assert np.array_equal(np.array([r["vector"] for r in got["results"]], np.float32), vectors)
    assert [r["metadata"] for r in got["results"]] == [{"k": "v"}, {}]


async def test_one_upsert_of_many_statements_stores_each_item_with_its_own_fields(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    # 1,000 items span every chunk size of the upsert, and the blocks are
    # stored between two of the chunks.
    vectors = np.random.default_rng(3).normal(size=(1000, 4)).astype("<f4")
    ids = [f"m{i}" for i in range(1000)]
    batch = {"ids": ids, "vectors_b64": base64.b64encode(vectors.tobytes()).decode(),
             "dimension": 4, "metadata": [{"n": i} for i in range(1000)], "contents": ids}
    response = await client.post("/vectors/upsert_binary", json={**index, "batch": batch})
    assert response.status_code == 200, response.text
    got = (await client.post("/vectors/get", json={
        **index, "ids": ids, "include": ["vector", "metadata", "contents"],
    })).json()["results"]
    assert [r["id"] for r in got] == ids
    assert [r["contents"] for r in got] == ids
    assert [r["metadata"] for r in got] == [{"n": i} for i in range(1000)]
    assert np.array_equal(np.array([r["vector"] for r in got], np.float32), vectors)
    assert await _count(client, index) == 1000


async def test_upsert_meeting_a_stored_id_in_a_late_chunk_overwrites_it_and_adds_the_rest(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    first = {"ids": ["m999"], "dimension": 4,
             "vectors_b64": base64.b64encode(np.ones((1, 4), "<f4").tobytes()).decode()}
    await client.post("/vectors/upsert_binary", json={**index, "batch": first})
    vectors = np.random.default_rng(4).normal(size=(1000, 4)).astype("<f4")
    ids = [f"m{i}" for i in range(1000)]
    batch = {"ids": ids, "vectors_b64": base64.b64encode(vectors.tobytes()).decode(),
             "dimension": 4}
    response = await client.post("/vectors/upsert_binary", json={**index, "batch": batch})
    assert response.status_code == 200, response.text
    got = (await client.post("/vectors/get", json={
        **index, "ids": ids, "include": ["vector"],
    })).json()["results"]
    assert np.array_equal(np.array([r["vector"] for r in got], np.float32), vectors)
    assert await _count(client, index) == 1000


async def test_upsert_binary_with_mismatched_counts_writes_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    rows = base64.b64encode(np.zeros((3, 4), "<f4").tobytes()).decode()
    batch = {"ids": ["x", "y"], "vectors_b64": rows, "dimension": 4}
    response = await client.post("/vectors/upsert_binary", json={**index, "batch": batch})
    assert response.status_code == 422
    assert await _count(client, index) == 0


async def test_delete_removes_items_and_reports_how_many_existed(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": _items(3)})
    deleted = await client.post("/vectors/delete", json={**index, "ids": ["doc-0", "ghost"]})
    assert deleted.json() == {"status": "success", "message": "Deleted 1 vectors"}
    listed = (await client.post("/vectors/list_ids", json=index)).json()
    assert sorted(listed["ids"]) == ["doc-1", "doc-2"] and listed["count"] == 2


async def test_list_ids_of_an_empty_index(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    assert (await client.post("/vectors/list_ids", json=index)).json() == {"ids": [], "count": 0}


async def test_list_ids_pages_through_many_items(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": _items(5000)})
    listed = (await client.post("/vectors/list_ids", json=index)).json()
    assert listed["count"] == 5000 and len(set(listed["ids"])) == 5000


async def test_dimension_mismatch_is_unprocessable_and_writes_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = _items(2) + [{"id": "short", "vector": [1.0, 2.0]}]
    response = await client.post("/vectors/upsert", json={**index, "items": items})
    assert response.status_code == 422
    assert "expected 4, got" in response.text
    assert await _count(client, index) == 0


async def test_an_id_given_twice_in_one_upsert_is_stored_as_its_last_occurrence(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    later = {"id": "doc-0", "vector": [9.0, 9.0, 9.0, 9.0], "contents": "later",
             "metadata": {"n": 99}}
    response = await client.post(
        "/vectors/upsert", json={**index, "items": [*_items(2), later]}
    )
    assert response.json()["message"] == "Upserted 2 vectors"
    got = await client.post("/vectors/get", json={**index, "ids": ["doc-0", "doc-1"]})
    assert got.json()["results"][0] == later
    assert got.json()["results"][1]["contents"] == "text 1"
    assert await _count(client, index) == 2


async def test_an_id_given_twice_in_one_binary_upsert_is_stored_as_its_last_occurrence(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    vectors = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    batch = {"ids": ["a", "b", "a"], "vectors_b64": base64.b64encode(vectors.tobytes()).decode(),
             "dimension": 4, "contents": ["first", "b", "last"]}
    response = await client.post("/vectors/upsert_binary", json={**index, "batch": batch})
    assert response.json()["message"] == "Upserted 2 vectors"
    got = await client.post("/vectors/get", json={**index, "ids": ["a"]})
    assert got.json()["results"][0]["vector"] == [0.0, 0.0, 1.0, 0.0]
    assert got.json()["results"][0]["contents"] == "last"
    assert await _count(client, index) == 2


async def test_an_oversized_item_is_named_by_its_position_in_the_request_after_duplicates(
    client: httpx.AsyncClient, index: dict[str, Any], settings: Settings
) -> None:
    big = {"id": "big", "vector": [1.0, 1.0, 1.0, 1.0],
           "contents": "x" * (settings.max_item_bytes + 1)}
    items = [*_items(1), *_items(1), big]
    response = await client.post("/vectors/upsert", json={**index, "items": items})
    assert response.status_code == 413
    assert "item 2 of the request" in response.text
    assert await _count(client, index) == 0


async def test_empty_id_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/upsert", json={**index, "items": [{"id": "", "vector": [1, 2, 3, 4]}]}
    )
    assert response.status_code == 422


async def test_empty_batch_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    assert (await client.post("/vectors/upsert", json={**index, "items": []})).status_code == 422


async def _post_raw_json(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> httpx.Response:
    """POST a body that may hold NaN or Infinity, which Python's json writes as literals."""
    return await client.post(
        path, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


async def test_malformed_json_body_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/upsert", content=b'{"index_name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "path", ["/vectors/query", "/vectors/upsert", "/indexes/create", "/indexes/some-index/users"]
)
async def test_deeply_nested_json_body_is_unprocessable_on_every_router(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(
        path, content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_id_with_a_lone_surrogate_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    # Valid JSON, which no UTF-8 text can hold once decoded.
    body = json.dumps({**index, "items": [{"id": "a\ud800", "vector": [1, 2, 3, 4]}]})
    response = await client.post(
        "/vectors/upsert", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 0, "id"]
    assert await _count(client, index) == 0


async def test_non_finite_vector_values_are_unprocessable_and_write_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        items = [{"id": "ok", "vector": [1, 2, 3, 4]}, {"id": "bad", "vector": [1, 2, 3, bad]}]
        response = await _post_raw_json(client, "/vectors/upsert", {**index, "items": items})
        assert response.status_code == 422, bad
    assert await _count(client, index) == 0


async def test_non_finite_metadata_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = [{"id": "m", "vector": [1, 2, 3, 4], "metadata": {"x": float("nan")}}]
    response = await _post_raw_json(client, "/vectors/upsert", {**index, "items": items})
    assert response.status_code == 422
    assert await _count(client, index) == 0


async def test_item_without_vector_needs_an_embedding_model(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post(
        "/vectors/upsert", json={**index, "items": [{"id": "t", "contents": "text only"}]}
    )
    assert response.status_code == 422
    assert "embedding model" in response.json()["detail"]


async def test_oversized_request_is_refused_with_413_and_writes_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    big = [{"id": f"big-{i}", "vector": [0.123456789] * 4, "contents": "x" * 10_000}
           for i in range(1000)]
    response = await client.post("/vectors/upsert", json={**index, "items": big})
    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]
    assert await _count(client, index) == 0


async def test_wrong_index_key_writes_and_reads_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    await client.post("/vectors/upsert", json={**index, "items": _items(1)})
    wrong = {**index, "index_key": secrets.token_hex(32)}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/vectors/upsert", {"items": _items(1, start=50)}),
        ("/vectors/get", {"ids": ["doc-0"]}),
        ("/vectors/delete", {"ids": ["doc-0"]}),
        ("/vectors/list_ids", {}),
        ("/vectors/num_vectors", {}),
        ("/vectors/query", {"query_vectors": [0, 1, 2, 3]}),
    ]
    for path, extra in calls:
        response = await client.post(path, json={**wrong, **extra})
        assert response.status_code == 401, path
    assert (await client.post("/vectors/list_ids", json=index)).json()["ids"] == ["doc-0"]


async def test_unknown_index_is_not_found_for_every_vector_route(
    client: httpx.AsyncClient, index_key: str
) -> None:
    body = {"index_name": "missing-index", "index_key": index_key}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/vectors/upsert", {"items": _items(1)}),
        ("/vectors/get", {"ids": ["a"]}),
        ("/vectors/delete", {"ids": ["a"]}),
        ("/vectors/list_ids", {}),
        ("/vectors/num_vectors", {}),
        ("/vectors/query", {"query_vectors": [0, 1, 2, 3]}),
    ]
    for path, extra in calls:
        assert (await client.post(path, json={**body, **extra})).status_code == 404, path
