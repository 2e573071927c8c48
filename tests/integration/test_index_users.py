"""Per-index users: API keys limited to one index and to read, write or admin."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.integration.test_kms_indexes import ITEMS
from tests.support.app_client import app_client

QUERY = {"query_vectors": [1, 0, 0, 0], "top_k": 1}


async def _kms_index(client: httpx.AsyncClient) -> dict[str, Any]:
    name = f"usr-{uuid.uuid4().hex[:12]}"
    response = await client.post("/indexes/create", json={"index_name": name,
                                                          "kms_name": "local-a"})
    assert response.status_code == 200, response.text
    index = {"index_name": name}
    assert (await client.post("/vectors/upsert", json={**index, "items": ITEMS})).is_success
    return index


async def _user(client: httpx.AsyncClient, index: dict[str, Any], *perms: str) -> dict[str, str]:
    response = await client.post(f"/indexes/{index['index_name']}/users",
                                 json={"permissions": list(perms)})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _as(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture
async def index(client: httpx.AsyncClient) -> dict[str, Any]:
    """A KMS-backed index holding two items."""
    return await _kms_index(client)


async def test_read_user_reads_but_cannot_write(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    key = _as((await _user(client, index, "read"))["api_key"])
    reads: list[tuple[str, dict[str, Any]]] = [
        ("/indexes/describe", {}), ("/vectors/query", QUERY),
        ("/vectors/get", {"ids": ["a"]}), ("/vectors/list_ids", {}),
        ("/vectors/num_vectors", {})]
    for route, extra in reads:
        response = await client.post(route, json={**index, **extra}, headers=key)
        assert response.status_code == 200, (route, response.text)
    writes: list[tuple[str, dict[str, Any]]] = [
        ("/vectors/upsert", {"items": ITEMS}), ("/vectors/delete", {"ids": ["a"]})]
    for route, extra in writes:
        response = await client.post(route, json={**index, **extra}, headers=key)
        assert response.status_code == 403, route
        assert "lacks the 'write' permission" in response.json()["detail"]


async def test_write_user_writes_but_cannot_read(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    key = _as((await _user(client, index, "write"))["api_key"])
    upsert = await client.post("/vectors/upsert", json={**index, "items": ITEMS}, headers=key)
    assert upsert.status_code == 200
    assert (await client.post("/vectors/query", json={**index, **QUERY},
                              headers=key)).status_code == 403
    assert (await client.post("/vectors/get", json={**index, "ids": ["a"]},
                              headers=key)).status_code == 403


async def test_user_key_cannot_see_other_indexes(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    key = _as((await _user(client, index, "read", "write", "admin"))["api_key"])
    other = await _kms_index(client)
    response = await client.post("/vectors/get", json={**other, "ids": ["a"]}, headers=key)
    assert response.status_code == 404


async def test_user_key_cannot_create_or_list_indexes(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    key = _as((await _user(client, index, "admin"))["api_key"])
    listed = await client.get("/indexes/list", headers=key)
    created = await client.post("/indexes/create", headers=key,
                                json={"index_name": "x-" + uuid.uuid4().hex, "kms_name": "local-a"})
    for response in (listed, created):
        assert response.status_code == 403
        assert response.json() == {"detail": "This operation requires an admin (root) API key"}


async def test_admin_permission_is_needed_to_train_delete_or_manage_users(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    key = _as((await _user(client, index, "read", "write"))["api_key"])
    name = index["index_name"]
    for response in (
        await client.post("/indexes/train", json=index, headers=key),
        await client.post("/indexes/delete", json=index, headers=key),
        await client.post(f"/indexes/{name}/users", json={"permissions": ["read"]}, headers=key),
        await client.get(f"/indexes/{name}/users", headers=key),
    ):
        assert response.status_code == 403


async def test_admin_user_manages_users_of_its_index(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    admin = _as((await _user(client, index, "admin", "read"))["api_key"])
    name = index["index_name"]
    minted = await client.post(f"/indexes/{name}/users", json={"permissions": ["read"]},
                               headers=admin)
    assert minted.status_code == 200
    listed = await client.get(f"/indexes/{name}/users", headers=admin)
    assert {"user_id": minted.json()["user_id"], "permissions": ["read"]} in listed.json()["users"]
    assert (await client.post("/indexes/delete", json=index, headers=admin)).status_code == 200


async def test_an_index_admin_cannot_grant_permissions_it_lacks(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    admin = await _user(client, index, "admin")
    as_admin = _as(admin["api_key"])
    name = index["index_name"]
    denied = await client.post("/vectors/get", json={**index, "ids": ["a"]}, headers=as_admin)
    assert denied.status_code == 403
    minted = await client.post(f"/indexes/{name}/users", headers=as_admin,
                               json={"permissions": ["admin", "write", "read"]})
    assert minted.status_code == 403
    assert minted.json() == {"detail": (
        f"This API key cannot grant permissions it lacks on index '{name}': read, write"
    )}
    listed = await client.get(f"/indexes/{name}/users")
    assert [u["user_id"] for u in listed.json()["users"]] == [admin["user_id"]]


async def test_an_index_admin_grants_permissions_it_holds(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    as_admin = _as((await _user(client, index, "admin", "write"))["api_key"])
    name = index["index_name"]
    for permissions in (["write"], ["admin"], ["admin", "write"]):
        minted = await client.post(f"/indexes/{name}/users", headers=as_admin,
                                   json={"permissions": permissions})
        assert minted.status_code == 200, (permissions, minted.text)


async def test_a_tenant_key_grants_any_permissions(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    user = await _user(client, index, "admin", "read", "write")
    response = await client.post("/vectors/get", json={**index, "ids": ["a"]},
                                 headers=_as(user["api_key"]))
    assert response.status_code == 200


async def test_list_users_shows_ids_and_permissions(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    reader = await _user(client, index, "read")
    writer = await _user(client, index, "write", "read")
    listed = await client.get(f"/indexes/{index['index_name']}/users")
    assert listed.json() == {"users": [
        {"user_id": reader["user_id"], "permissions": ["read"]},
        {"user_id": writer["user_id"], "permissions": ["read", "write"]},
    ]}


async def test_deleted_user_is_refused_with_an_empty_204(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    user = await _user(client, index, "read")
    deleted = await client.delete(f"/indexes/{index['index_name']}/users/{user['user_id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    response = await client.post("/indexes/describe", json=index, headers=_as(user["api_key"]))
    assert response.status_code == 401
    assert (await client.get(f"/indexes/{index['index_name']}/users")).json() == {"users": []}


async def test_unknown_permission_is_a_400(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post(f"/indexes/{index['index_name']}/users",
                                 json={"permissions": ["root"]})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "invalid permissions ['root']; allowed: ['read', 'write', 'admin']"
    }


async def test_non_hex_user_id_is_a_400(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.delete(f"/indexes/{index['index_name']}/users/not-hex")
    assert response.status_code == 400
    assert response.json() == {"detail": "user_id must be hex"}


async def test_users_of_an_sdk_key_index_need_its_key(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    await client.post("/indexes/create", json={"index_name": index_name, "index_key": index_key})
    path = f"/indexes/{index_name}/users"
    assert (await client.post(path, json={"permissions": ["read"]})).status_code == 401
    user = await client.post(path, json={"permissions": ["read"], "index_key": index_key})
    assert user.status_code == 200
    assert (await client.get(path, headers={"X-Index-Key": "00" * 32})).status_code == 401
    listed = await client.get(path, headers={"X-Index-Key": index_key})
    assert [u["user_id"] for u in listed.json()["users"]] == [user.json()["user_id"]]
    # The user reads with its own API key, but the data still needs the index's key.
    body = {"index_name": index_name, "ids": ["a"]}
    as_user = _as(user.json()["api_key"])
    assert (await client.post("/vectors/get", json=body, headers=as_user)).status_code == 401
    with_key = await client.post("/vectors/get", json={**body, "index_key": index_key},
                                 headers=as_user)
    assert with_key.status_code == 200


async def test_deleting_the_index_deletes_its_users(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    user = await _user(client, index, "read")
    key = _as(user["api_key"])
    assert (await client.post("/indexes/describe", json=index, headers=key)).is_success
    await client.post("/indexes/delete", json=index)
    recreated = await client.post("/indexes/create", json={**index, "kms_name": "local-a"})
    assert recreated.status_code == 200
    response = await client.post("/indexes/describe", json=index, headers=key)
    assert response.status_code == 401


@pytest.fixture
async def short_ttl_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another app instance on the same database, trusting verified keys for 0.3 s."""
    fast_revocation = settings.model_copy(update={"api_key_cache_ttl_s": 0.3})
    async with app_client(fast_revocation, base_url="http://other/v1") as http:
        yield http


async def test_user_revocation_reaches_another_process_within_the_key_ttl(
    client: httpx.AsyncClient, short_ttl_process: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    user = await _user(client, index, "read")
    key = _as(user["api_key"])
    assert (await short_ttl_process.post("/indexes/describe", json=index, headers=key)).is_success
    await client.delete(f"/indexes/{index['index_name']}/users/{user['user_id']}")
    await asyncio.sleep(0.35)
    response = await short_ttl_process.post("/vectors/get", json={**index, "ids": ["a"]},
                                         headers=key)
    assert response.status_code == 401


async def test_index_name_with_a_control_character_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/indexes/a%00b/users")
    assert response.status_code == 422
