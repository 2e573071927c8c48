"""/v1/indexes/*: create, list, describe, delete, and their errors."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

import httpx
import pytest


async def test_create_then_describe_reports_the_configuration(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = {"index_name": index_name, "index_key": index_key}
    created = await client.post(
        "/indexes/create", json={**body, "dimension": 8, "metric": "cosine"}
    )
    assert created.json() == {
        "status": "success", "message": f"Index '{index_name}' created successfully"
    }
    described = await client.post("/indexes/describe", json=body)
    assert described.json() == {
        "index_name": index_name, "is_trained": False, "dimension": 8, "metric": "cosine",
        "n_lists": 1, "metadata_schema": {}, "bm25": None,
    }


async def test_dimension_is_zero_until_the_first_upsert_fixes_it(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    body = {"index_name": index_name, "index_key": index_key}
    await client.post("/indexes/create", json={**body, "dimension": None, "metric": None})
    assert (await client.post("/indexes/describe", json=body)).json()["dimension"] == 0
    await client.post("/vectors/upsert", json={**body, "items": [{"id": "a", "vector": [1, 2, 3]}]})
    described = (await client.post("/indexes/describe", json=body)).json()
    assert (described["dimension"], described["metric"]) == (3, "euclidean")


async def test_list_shows_created_and_hides_deleted_indexes(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    assert index["index_name"] in (await client.get("/indexes/list")).json()["indexes"]
    deleted = await client.post("/indexes/delete", json=index)
    assert deleted.json()["message"] == f"Index '{index['index_name']}' deleted successfully"
    assert index["index_name"] not in (await client.get("/indexes/list")).json()["indexes"]
    assert (await client.post("/indexes/describe", json=index)).status_code == 404


async def test_duplicate_name_is_a_conflict(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    again = await client.post("/indexes/create", json={**index, "dimension": 4})
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


async def test_both_index_key_and_kms_name_is_a_bad_request(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    response = await client.post(
        "/indexes/create",
        json={"index_name": index_name, "index_key": index_key, "kms_name": "main"},
    )
    assert response.status_code == 400
    assert "index_key must not be supplied alongside kms_name" in response.json()["detail"]


async def test_neither_index_key_nor_kms_name_is_a_bad_request(
    client: httpx.AsyncClient, index_name: str
) -> None:
    response = await client.post("/indexes/create", json={"index_name": index_name})
    assert response.status_code == 400
    assert "exactly one of kms_name or index_key" in response.json()["detail"]


async def test_unknown_kms_entry_is_a_bad_request(
    client: httpx.AsyncClient, index_name: str
) -> None:
    response = await client.post(
        "/indexes/create", json={"index_name": index_name, "kms_name": "nope"}
    )
    assert response.status_code == 400
    assert "Unknown KMS registry entry: 'nope'" in response.json()["detail"]


async def test_malformed_index_key_is_unprocessable(
    client: httpx.AsyncClient, index_name: str
) -> None:
    for bad in ("zz" * 32, "ab" * 31, "ab" * 33, ""):
        response = await client.post(
            "/indexes/create", json={"index_name": index_name, "index_key": bad}
        )
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["body", "index_key"]


async def test_unknown_metric_is_unprocessable(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    response = await client.post(
        "/indexes/create",
        json={"index_name": index_name, "index_key": index_key, "metric": "manhattan"},
    )
    assert response.status_code == 422


async def test_embedding_model_without_the_extra_names_the_extra(
    client: httpx.AsyncClient, index_name: str, index_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules is how Python spells "not installed" to importers.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    response = await client.post("/indexes/create", json={
        "index_name": index_name, "index_key": index_key,
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
    })
    assert response.status_code == 422
    assert "'embeddings' extra" in response.json()["detail"]
    assert (await client.post("/indexes/describe", json={
        "index_name": index_name, "index_key": index_key})).status_code == 404


async def test_wrong_index_key_is_unauthorized_for_describe_and_delete(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    wrong = {**index, "index_key": secrets.token_hex(32)}
    for path in ("/indexes/describe", "/indexes/delete"):
        response = await client.post(path, json=wrong)
        assert response.status_code == 401
        assert "Wrong encryption key" in response.json()["detail"]
    assert (await client.post("/indexes/describe", json=index)).status_code == 200


async def test_missing_index_key_is_unauthorized(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post(
        "/indexes/describe", json={"index_name": index["index_name"], "index_key": None}
    )
    assert response.status_code == 401


async def test_unknown_index_is_not_found(client: httpx.AsyncClient, index_key: str) -> None:
    for path in ("/indexes/describe", "/indexes/delete"):
        response = await client.post(path, json={"index_name": "nope", "index_key": index_key})
        assert response.status_code == 404
        assert response.json() == {"detail": "Index 'nope' not found"}


async def test_metadata_field_name_with_a_nul_character_is_a_422(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    response = await client.post("/indexes/create", json={
        "index_name": index_name, "index_key": index_key, "dimension": 4,
        "metadata_schema": {"a\u0000b": {"filterable": True}},
    })
    assert response.status_code == 422, response.text


async def test_metadata_field_name_with_a_lone_surrogate_is_a_422(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    # Valid JSON, which no UTF-8 text can hold once decoded. `loc` names the field,
    # with U+FFFD where pydantic could not decode it, so the 422 renders as UTF-8.
    body = json.dumps({
        "index_name": index_name, "index_key": index_key, "dimension": 4,
        "metadata_schema": {"a\ud800": {"filterable": "maybe"}},
    })
    response = await client.post("/indexes/create", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "metadata_schema"]
