"""Index names: every name create accepts works on every route, in a body and in a
URL path; names some route or client could not address are refused with a 422
naming the rule; indexes created under the older, looser rule stay reachable."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from app.services import auth
from app.store.db import Database

ACCEPTED = {
    "unicode letters": "Ünïcødé-名前-ʻokina",
    "spaces inside": "my first index",
    "dots": "v1.0...final",
    "three dots": "...",
    "trailing dots": "a..",
    "hyphens and underscores": "-_-_",
    "emoji": "rocket 🚀 index",
    "URL syntax": "q?x=1&y=2#frag;p%2F%20+~@:",
    "128 characters": "é" * 128,
}

REFUSED = {
    "a slash": "a/b",
    "a backslash": "a\\b",
    "one dot": ".",
    "two dots": "..",
    "only a space": " ",
    "a leading space": " a",
    "a trailing space": "a ",
    "a bidi override": "abc\u202efed",
    "a zero-width space": "a\u200bb",
    "a no-break space": "a\u00a0b",
    "a line separator": "a\u2028b",
    "a tab": "a\tb",
    "a private-use character": "a\ue000",
}


@pytest.fixture
async def tenant(client: httpx.AsyncClient, db: Database) -> dict[str, str]:
    """The headers of a new tenant's key, so the listed names are free in it."""
    new = await auth.create_api_key(db, name=f"names-{uuid.uuid4().hex[:8]}")
    return {"X-API-Key": new.secret}


async def _post(client: httpx.AsyncClient, headers: dict[str, str], path: str,
                body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 200, (path, response.text)
    return dict(response.json())


async def _use_through_the_body(
    client: httpx.AsyncClient, headers: dict[str, str], index: dict[str, Any]
) -> None:
    """Describe, upsert, query and get, each addressing the index in the body."""
    info = await _post(client, headers, "/indexes/describe", index)
    assert info["index_name"] == index["index_name"]
    await _post(client, headers, "/vectors/upsert", {**index, "items": [
        {"id": "a", "vector": [1.0, 0.0, 0.0, 0.0]}, {"id": "b", "vector": [0.0, 1.0, 0.0, 0.0]},
    ]})
    hits = await _post(client, headers, "/vectors/query",
                       {**index, "query_vectors": [1.0, 0.0, 0.0, 0.0], "top_k": 1})
    assert [hit["id"] for hit in hits["results"]] == ["a"]
    got = await _post(client, headers, "/vectors/get", {**index, "ids": ["b"]})
    assert [item["id"] for item in got["results"]] == ["b"]


@pytest.mark.parametrize("kind", list(ACCEPTED))
async def test_an_accepted_name_works_on_every_route(
    client: httpx.AsyncClient, tenant: dict[str, str], kind: str
) -> None:
    name, key = ACCEPTED[kind], secrets.token_hex(32)
    index = {"index_name": name, "index_key": key}
    await _post(client, tenant, "/indexes/create", {**index, "dimension": 4})
    listed = await client.get("/indexes/list", headers=tenant)
    assert listed.json()["indexes"] == [name]
    await _use_through_the_body(client, tenant, index)

    # The official client puts the name in the path as urllib's quote(name, safe="").
    users = f"/indexes/{quote(name, safe='')}/users"
    with_key = {**tenant, "X-Index-Key": key}
    minted = await client.post(users, json={"permissions": ["read"], "index_key": key},
                               headers=tenant)
    assert minted.status_code == 200, minted.text
    user_id = minted.json()["user_id"]
    listed_users = await client.get(users, headers=with_key)
    assert listed_users.json() == {"users": [{"user_id": user_id, "permissions": ["read"]}]}
    deleted = await client.delete(f"{users}/{user_id}", headers=with_key)
    assert deleted.status_code == 204, deleted.text

    await _post(client, tenant, "/indexes/delete", index)
    assert (await client.get("/indexes/list", headers=tenant)).json()["indexes"] == []


@pytest.mark.parametrize("kind", list(REFUSED))
async def test_a_name_some_route_could_not_address_is_refused_naming_the_rule(
    client: httpx.AsyncClient, tenant: dict[str, str], kind: str
) -> None:
    response = await client.post("/indexes/create", headers=tenant, json={
        "index_name": REFUSED[kind], "index_key": secrets.token_hex(32), "dimension": 4,
    })
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": [{
        "type": "index_name", "loc": ["body", "index_name"],
        "msg": "index names are printable characters without '/' or '\\', without "
               "control, bidi or zero-width characters, with spaces only inside, "
               "and not '.' or '..'",
    }]}
    assert (await client.get("/indexes/list", headers=tenant)).json()["indexes"] == []


@pytest.mark.parametrize("name", ["", "x" * 129])
async def test_a_name_of_0_or_129_characters_is_refused(
    client: httpx.AsyncClient, tenant: dict[str, str], name: str
) -> None:
    response = await client.post("/indexes/create", headers=tenant, json={
        "index_name": name, "index_key": secrets.token_hex(32), "dimension": 4,
    })
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] in {"string_too_short", "string_too_long"}


@pytest.mark.parametrize("legacy", ["a/b", "..", " ", "abc\u202efed"])
async def test_an_index_named_under_the_older_rule_stays_readable_and_deletable(
    client: httpx.AsyncClient, tenant: dict[str, str], db: Database, legacy: str
) -> None:
    placeholder, key = f"legacy-{uuid.uuid4().hex[:8]}", secrets.token_hex(32)
    await _post(client, tenant, "/indexes/create",
                {"index_name": placeholder, "index_key": key, "dimension": 4})
    async with db.transaction() as conn:  # as the older rule would have let it be created
        await conn.execute(text("UPDATE indexes SET name = :legacy WHERE name = :placeholder"),
                           {"legacy": legacy, "placeholder": placeholder})
    index = {"index_name": legacy, "index_key": key}
    await _use_through_the_body(client, tenant, index)
    await _post(client, tenant, "/indexes/delete", index)
    assert (await client.get("/indexes/list", headers=tenant)).json()["indexes"] == []
