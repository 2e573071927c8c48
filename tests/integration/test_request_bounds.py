"""Bounded work per request: every count and size one request can ask for has a
limit (a setting), refused with a 4xx that names it before the work is done."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.support.app_client import app_client

LIMITS = {
    "max_ids_per_request": 50,
    "max_query_rows": 20,
    "max_query_results": 100,
    "max_top_k": 40,
    "max_item_bytes": 2_000,
    "max_response_bytes": 30_000,
}


@pytest.fixture(scope="module")
async def bounded(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose limits are small enough to reach in a test."""
    async with app_client(settings.model_copy(update=LIMITS), api_key=api_key) as http:
        yield http


@pytest.fixture
async def filled(bounded: httpx.AsyncClient) -> dict[str, Any]:
    """A 4-d index holding items v0..v29 with a little metadata."""
    body = {"index_name": f"bounds-{uuid.uuid4().hex[:10]}", "index_key": secrets.token_hex(32)}
    created = await bounded.post("/indexes/create", json={**body, "dimension": 4})
    assert created.status_code == 200, created.text
    items = [{"id": f"v{i}", "vector": [i, 1, 0, 0], "metadata": {"n": i}} for i in range(30)]
    stored = await bounded.post("/vectors/upsert", json={**body, "items": items})
    assert stored.status_code == 200, stored.text
    return body


async def _count(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await client.post("/vectors/num_vectors", json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["result"])


async def test_get_of_more_ids_than_the_limit_is_refused_naming_it(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    ids = [f"v{i}" for i in range(51)]
    response = await bounded.post("/vectors/get", json={**filled, "ids": ids})
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_IDS_PER_REQUEST" in response.json()["detail"]


async def test_get_of_exactly_the_limit_is_answered(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    ids = [f"v{i}" for i in range(50)]
    response = await bounded.post(
        "/vectors/get", json={**filled, "ids": ids, "include": ["metadata"]}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 30


async def test_delete_of_more_ids_than_the_limit_is_refused_and_deletes_nothing(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    ids = [f"v{i}" for i in range(51)]
    response = await bounded.post("/vectors/delete", json={**filled, "ids": ids})
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_IDS_PER_REQUEST" in response.json()["detail"]
    assert await _count(bounded, filled) == 30


async def test_query_of_more_rows_than_the_limit_is_refused_naming_it(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    rows = np.ones((21, 4), dtype=np.float32)
    batch = {"vectors_b64": base64.b64encode(rows.tobytes()).decode(), "dimension": 4}
    response = await bounded.post(
        "/vectors/query_binary", json={**filled, "batch": batch, "top_k": 1}
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_QUERY_ROWS" in response.json()["detail"]


async def test_batch_query_whose_rows_times_top_k_exceed_the_limit_is_refused(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    response = await bounded.post(
        "/vectors/query", json={**filled, "query_vectors": [[1, 1, 0, 0]] * 11, "top_k": 10}
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_QUERY_RESULTS" in response.json()["detail"]


async def test_batch_query_at_the_results_limit_is_answered(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    response = await bounded.post(
        "/vectors/query", json={**filled, "query_vectors": [[1, 1, 0, 0]] * 10, "top_k": 10}
    )
    assert response.status_code == 200, response.text
    assert [len(hits) for hits in response.json()["results"]] == [10] * 10


async def test_top_k_over_the_limit_is_refused_naming_it(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    response = await bounded.post(
        "/vectors/query", json={**filled, "query_vectors": [1, 1, 0, 0], "top_k": 41}
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_TOP_K" in response.json()["detail"]


async def test_default_top_k_is_capped_by_the_top_k_limit(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    response = await bounded.post("/vectors/query", json={**filled, "query_vectors": [1, 1, 0, 0]})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 30


@pytest.mark.parametrize(
    "item",
    [
        {"contents": "x" * 2_001},
        {"metadata": {"text": "y" * 2_000}},
        {"contents": "x" * 1_000, "metadata": {"text": "y" * 1_000}},
        {"contents": "é" * 1_001},
    ],
    ids=["contents", "metadata", "both", "utf8-bytes"],
)
async def test_item_over_the_byte_limit_is_refused_with_413_and_nothing_is_written(
    bounded: httpx.AsyncClient, filled: dict[str, Any], item: dict[str, Any]
) -> None:
    items = [
        {"id": "fine", "vector": [1, 2, 3, 4]},
        {"id": "heavy", "vector": [1, 2, 3, 4], **item},
    ]
    response = await bounded.post("/vectors/upsert", json={**filled, "items": items})
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "CIPHERVEC_MAX_ITEM_BYTES" in detail and "item 1" in detail
    assert await _count(bounded, filled) == 30


async def test_binary_upsert_item_over_the_byte_limit_is_refused_with_413(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    rows = np.ones((2, 4), dtype=np.float32)
    batch = {
        "ids": ["b0", "b1"], "vectors_b64": base64.b64encode(rows.tobytes()).decode(),
        "dimension": 4, "metadata": [None, {"blob": "z" * 3_000}], "contents": None,
    }
    response = await bounded.post("/vectors/upsert_binary", json={**filled, "batch": batch})
    assert response.status_code == 413
    assert "CIPHERVEC_MAX_ITEM_BYTES" in response.json()["detail"]
    assert await _count(bounded, filled) == 30


async def test_item_at_the_byte_limit_is_stored(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    items = [{"id": "edge", "vector": [1, 2, 3, 4], "contents": "x" * 2_000}]
    response = await bounded.post("/vectors/upsert", json={**filled, "items": items})
    assert response.status_code == 200, response.text
    assert await _count(bounded, filled) == 31


async def _heavy_items(client: httpx.AsyncClient, body: dict[str, Any], count: int) -> None:
    """`count` items of about 1,900 bytes of metadata each, within the item limit."""
    items = [
        {"id": f"h{i}", "vector": [i, 2, 0, 0], "metadata": {"text": "w" * 1_900}}
        for i in range(count)
    ]
    response = await client.post("/vectors/upsert", json={**body, "items": items})
    assert response.status_code == 200, response.text


async def test_query_whose_answer_would_exceed_the_response_limit_is_refused(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    await _heavy_items(bounded, filled, 30)
    response = await bounded.post(
        "/vectors/query",
        json={**filled, "query_vectors": [[5, 2, 0, 0]] * 3, "top_k": 10,
              "include": ["metadata"]},
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_RESPONSE_BYTES" in response.json()["detail"]


async def test_query_of_many_repeats_of_one_large_item_is_refused(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    """The response counts every hit, not every distinct item: one item of 1.9 kB
    returned to 20 identical queries is 38 kB of metadata, over 30 kB."""
    await _heavy_items(bounded, filled, 1)
    response = await bounded.post(
        "/vectors/query",
        json={**filled, "query_vectors": [[0, 2, 0, 0]] * 20, "top_k": 5,
              "include": ["metadata", "contents"]},
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_RESPONSE_BYTES" in response.json()["detail"]


async def test_the_same_query_without_the_large_fields_is_answered(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    await _heavy_items(bounded, filled, 30)
    response = await bounded.post(
        "/vectors/query",
        json={**filled, "query_vectors": [[5, 2, 0, 0]] * 3, "top_k": 10,
              "include": ["distance"]},
    )
    assert response.status_code == 200, response.text
    assert [len(hits) for hits in response.json()["results"]] == [10, 10, 10]


async def test_query_that_would_decrypt_more_than_the_response_limit_is_refused(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    """Only ids are asked for, but 30 distinct items of 1.9 kB must be decrypted."""
    await _heavy_items(bounded, filled, 30)
    response = await bounded.post(
        "/vectors/query",
        json={**filled, "query_vectors": [[5, 2, 0, 0]], "top_k": 30, "include": []},
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_RESPONSE_BYTES" in response.json()["detail"]


async def test_get_whose_answer_would_exceed_the_response_limit_is_refused(
    bounded: httpx.AsyncClient, filled: dict[str, Any]
) -> None:
    await _heavy_items(bounded, filled, 30)
    response = await bounded.post(
        "/vectors/get", json={**filled, "ids": [f"h{i}" for i in range(30)],
                              "include": ["metadata"]},
    )
    assert response.status_code == 422
    assert "CIPHERVEC_MAX_RESPONSE_BYTES" in response.json()["detail"]
