"""X-API-Key authentication and tenant isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.errors import Unauthenticated
from app.services import auth
from app.services.auth import ApiKeyCache
from app.store.db import Database


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-API-Key": ""})
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["api_version"] == "v1"


async def test_missing_key_is_unauthorized(client: httpx.AsyncClient) -> None:
    response = await client.get("/indexes/list", headers={"X-API-Key": ""})
    assert response.status_code == 401
    assert response.json() == {"detail": "API Key is required"}


async def test_unknown_key_is_unauthorized(client: httpx.AsyncClient) -> None:
    for key in ("garbage", "cv_000000000000_nope"):
        response = await client.get("/indexes/list", headers={"X-API-Key": key})
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid API Key"}


async def test_revoked_key_is_refused(db: Database) -> None:
    new = await auth.create_api_key(db, name="short-lived")
    assert (await auth.authenticate(db, ApiKeyCache(0), new.secret)).tenant == "short-lived"
    assert await auth.revoke_api_key(db, new.row.prefix)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(db, ApiKeyCache(0), new.secret)


async def test_key_hash_not_key_is_stored(db: Database) -> None:
    new = await auth.create_api_key(db, name="stored")
    rows = {row.prefix: row for row in await auth.list_api_keys(db)}
    assert new.secret.encode() not in rows[new.row.prefix].key_hash
    assert len(rows[new.row.prefix].key_hash) == 32


async def test_other_tenants_index_is_invisible(
    client: httpx.AsyncClient, db: Database, index: dict[str, Any]
) -> None:
    other = (await auth.create_api_key(db, name="other-tenant")).secret
    headers = {"X-API-Key": other}
    listed = await client.get("/indexes/list", headers=headers)
    assert index["index_name"] not in listed.json()["indexes"]
    for path in ("/indexes/describe", "/vectors/num_vectors", "/indexes/delete"):
        response = await client.post(path, json=index, headers=headers)
        assert response.status_code == 404, path
    assert (await client.post("/indexes/describe", json=index)).status_code == 200


async def test_same_name_can_exist_in_two_tenants(
    client: httpx.AsyncClient, db: Database, index: dict[str, Any]
) -> None:
    other = (await auth.create_api_key(db, name="second-tenant")).secret
    response = await client.post(
        "/indexes/create", json={**index, "dimension": 2}, headers={"X-API-Key": other}
    )
    assert response.status_code == 200
    assert (await client.post("/indexes/describe", json=index)).json()["dimension"] == 4
