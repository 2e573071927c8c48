"""KMS-backed indexes: created with `kms_name`, used without `index_key`, the KMSBlob in
PostgreSQL, and a KMS outage (moto's server stopped) as a clean 503 that heals."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.config import Settings
from app.store.db import Database
from app.store.tables import indexes
from tests.support.app_client import app_client
from tests.support.kms import MotoKms

ITEMS = [
    {"id": "a", "vector": [1, 0, 0, 0], "contents": "first", "metadata": {"n": 1}},
    {"id": "b", "vector": [0, 1, 0, 0], "contents": "second", "metadata": {"n": 2}},
]


def _name() -> str:
    return f"kms-{uuid.uuid4().hex[:12]}"


async def _create(client: httpx.AsyncClient, kms_name: str) -> dict[str, Any]:
    name = _name()
    response = await client.post(
        "/indexes/create",
        json={"index_name": name, "index_key": None, "kms_name": kms_name, "dimension": 4},
    )
    assert response.status_code == 200, response.text
    return {"index_name": name}


async def _stored(db: Database, name: str) -> dict[str, Any]:
    async with db.transaction() as conn:
        row = (await conn.execute(select(indexes).where(indexes.c.name == name))).one()
    return dict(row._mapping)


@pytest.fixture
async def uncached(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second app instance that caches no data key, so every request asks the KMS."""
    no_key_cache = settings.model_copy(update={"dek_cache_ttl_s": 0.0})
    async with app_client(no_key_cache, api_key=api_key, base_url="http://uncached/v1") as http:
        yield http


@pytest.mark.parametrize("kms_name", ["local-a", "local-b", "aws-a"])
async def test_kms_index_round_trips_items_without_an_index_key(
    client: httpx.AsyncClient, kms_name: str
) -> None:
    index = await _create(client, kms_name)
    assert (await client.post("/vectors/upsert", json={**index, "items": ITEMS})).is_success
    got = await client.post("/vectors/get", json={**index, "ids": ["a", "b"]})
    assert [(r["id"], r["contents"], r["metadata"]) for r in got.json()["results"]] == [
        ("a", "first", {"n": 1}), ("b", "second", {"n": 2})
    ]
    hits = await client.post("/vectors/query", json={**index, "query_vectors": [0, 1, 0, 0],
                                                     "top_k": 1})
    assert hits.json()["results"] == [{"id": "b"}]


async def test_aws_kms_blob_is_stored_with_an_encryption_context_naming_the_index(
    client: httpx.AsyncClient, db: Database, moto_kms: MotoKms
) -> None:
    index = await _create(client, "aws-a")
    row = await _stored(db, index["index_name"])
    assert (row["key_provider"], row["kms_name"], row["key_version"]) == ("aws", "aws-a", 1)
    assert row["kms_context"] == {
        "ciphervec:index_id": str(row["id"]),
        "ciphervec:index": f"tests/{index['index_name']}",
    }
    # The blob is AWS's ciphertext: the KMS opens it under that context, and only then.
    opened = moto_kms.client().decrypt(
        CiphertextBlob=row["wrapped_dek"], EncryptionContext=row["kms_context"]
    )
    assert len(opened["Plaintext"]) == 32
    assert opened["KeyId"].endswith(row["kms_key_id"])


async def test_local_kms_blob_names_its_master_key(
    client: httpx.AsyncClient, db: Database
) -> None:
    row = await _stored(db, (await _create(client, "local-b"))["index_name"])
    assert (row["key_provider"], row["kms_name"], row["kms_key_id"]) == (
        "local", "local-b", "master-b"
    )


async def test_index_key_with_kms_name_is_refused(
    client: httpx.AsyncClient, index_key: str
) -> None:
    response = await client.post("/indexes/create", json={
        "index_name": _name(), "index_key": index_key, "kms_name": "local-a"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "index_key must not be supplied alongside kms_name='local-a'"
    }


async def test_neither_index_key_nor_kms_name_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/indexes/create", json={"index_name": _name()})
    assert response.status_code == 400
    assert response.json() == {"detail": "exactly one of kms_name or index_key must be supplied"}


async def test_unknown_kms_entry_is_refused_naming_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/indexes/create", json={"index_name": _name(),
                                                          "kms_name": "nope"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Unknown KMS registry entry: 'nope'. Known: "
                                         "['aws-a', 'aws-b', 'local-a', 'local-b']"}


async def test_index_key_sent_to_a_kms_index_is_refused(
    client: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, "local-a")
    response = await client.post("/vectors/upsert",
                                 json={**index, "index_key": index_key, "items": ITEMS})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        f"index '{index['index_name']}' is KMS-backed (provider=local); do not supply index_key"
    )


async def test_kms_index_still_needs_an_api_key(client: httpx.AsyncClient) -> None:
    index = await _create(client, "local-a")
    response = await client.post("/indexes/describe", json=index, headers={"X-API-Key": ""})
    assert response.status_code == 401


async def test_kms_outage_is_a_503_with_retry_after_until_the_kms_returns(
    client: httpx.AsyncClient, uncached: httpx.AsyncClient, moto_kms: MotoKms
) -> None:
    index = await _create(client, "aws-a")
    assert (await uncached.post("/vectors/upsert", json={**index, "items": ITEMS})).is_success
    moto_kms.stop()
    try:
        response = await uncached.post("/vectors/get", json={**index, "ids": ["a"]})
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "KMS 'aws-a' is unavailable" in response.json()["detail"]
    finally:
        moto_kms.start()
    response = await uncached.post("/vectors/get", json={**index, "ids": ["a"]})
    assert response.status_code == 200
    assert response.json()["results"][0]["contents"] == "first"


async def test_create_whose_wrap_fails_leaves_no_index(
    client: httpx.AsyncClient, moto_kms: MotoKms
) -> None:
    name = _name()
    moto_kms.stop()
    try:
        response = await client.post("/indexes/create",
                                     json={"index_name": name, "kms_name": "aws-a"})
        assert response.status_code == 503
    finally:
        moto_kms.start()
    assert name not in (await client.get("/indexes/list")).json()["indexes"]
    response = await client.post("/indexes/create", json={"index_name": name, "kms_name": "aws-a"})
    assert response.status_code == 200
