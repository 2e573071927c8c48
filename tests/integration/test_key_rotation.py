"""Key rotation: the DEK re-wrapped under a new index_key or KMS key, items untouched,
the old key refused at once, in this process and in another one on the same database."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.store.db import Database
from app.store.tables import indexes, items
from tests.integration.test_kms_indexes import ITEMS
from tests.support.kms import MotoKms

ALL = ["a", "b"]


async def _create(client: httpx.AsyncClient, **key: str) -> dict[str, Any]:
    name = f"rot-{uuid.uuid4().hex[:12]}"
    response = await client.post("/indexes/create", json={"index_name": name, "dimension": 4,
                                                          **key})
    assert response.status_code == 200, response.text
    assert (await client.post("/vectors/upsert", json={"index_name": name, **key,
                                                       "items": ITEMS})).is_success
    return {"index_name": name}


async def _read(client: httpx.AsyncClient, index: dict[str, Any]) -> httpx.Response:
    return await client.post("/vectors/get", json={**index, "ids": ALL})


async def _item_rows(db: Database, name: str) -> list[tuple[bytes, bytes]]:
    async with db.transaction() as conn:
        index_id = (await conn.execute(
            select(indexes.c.id).where(indexes.c.name == name))).scalar_one()
        rows = await conn.execute(select(items.c.id_token, items.c.payload)
                                  .where(items.c.index_id == index_id)
                                  .order_by(items.c.id_token))
    return [(bytes(t), bytes(p)) for t, p in rows]


async def _rotate(client: httpx.AsyncClient, **body: str) -> httpx.Response:
    return await client.post("/indexes/rotate_key", json=body)


async def test_rotation_to_a_new_index_key_keeps_every_item_readable(
    client: httpx.AsyncClient, db: Database, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    before = (await _read(client, {**index, "index_key": index_key})).json()
    rows_before = await _item_rows(db, index["index_name"])
    new_key = secrets.token_hex(32)
    response = await _rotate(client, **index, index_key=index_key, new_index_key=new_key)
    assert response.status_code == 200, response.text
    assert response.json()["key_version"] == 2
    assert (await _read(client, {**index, "index_key": new_key})).json() == before
    assert await _item_rows(db, index["index_name"]) == rows_before  # nothing re-encrypted


async def test_old_index_key_is_refused_after_rotation(
    client: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    await _rotate(client, **index, index_key=index_key, new_index_key=secrets.token_hex(32))
    old = {**index, "index_key": index_key}
    assert (await _read(client, old)).status_code == 401
    query = await client.post("/vectors/query", json={**old, "query_vectors": [1, 0, 0, 0]})
    assert query.status_code == 401


async def test_rotation_needs_the_current_key(
    client: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    wrong = await _rotate(client, **index, index_key=secrets.token_hex(32),
                          new_index_key=secrets.token_hex(32))
    assert wrong.status_code == 401
    assert (await _read(client, {**index, "index_key": index_key})).status_code == 200


async def test_rotation_needs_exactly_one_new_key(
    client: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    both = await _rotate(client, **index, index_key=index_key,
                         new_index_key=secrets.token_hex(32), new_kms_name="local-a")
    neither = await _rotate(client, **index, index_key=index_key)
    assert (both.status_code, neither.status_code) == (400, 400)


async def test_rotation_from_an_index_key_to_kms(
    client: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    before = (await _read(client, {**index, "index_key": index_key})).json()
    response = await _rotate(client, **index, index_key=index_key, new_kms_name="aws-a")
    assert response.json()["key_provider"] == "aws"
    assert (await _read(client, index)).json() == before
    # The old client key no longer applies: the index is KMS-backed now.
    assert (await _read(client, {**index, "index_key": index_key})).status_code == 400


@pytest.mark.parametrize(("first", "second"), [("aws-a", "aws-b"), ("local-a", "local-b"),
                                               ("local-b", "aws-a")])
async def test_rotation_between_kms_keys(
    client: httpx.AsyncClient, db: Database, first: str, second: str
) -> None:
    index = await _create(client, kms_name=first)
    before = (await _read(client, index)).json()
    assert (await _rotate(client, **index, new_kms_name=second)).status_code == 200
    async with db.transaction() as conn:
        stored = (await conn.execute(select(indexes.c.kms_name, indexes.c.key_version)
                                     .where(indexes.c.name == index["index_name"]))).one()
    assert tuple(stored) == (second, 2)
    assert (await _read(client, index)).json() == before


async def test_rotation_from_kms_back_to_an_index_key(client: httpx.AsyncClient) -> None:
    index = await _create(client, kms_name="local-a")
    new_key = secrets.token_hex(32)
    assert (await _rotate(client, **index, new_index_key=new_key)).status_code == 200
    assert (await _read(client, index)).status_code == 401
    assert (await _read(client, {**index, "index_key": new_key})).status_code == 200


async def test_rotation_takes_effect_in_another_process_at_once(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    old = {**index, "index_key": index_key}
    query = {"query_vectors": [1, 0, 0, 0], "top_k": 1}
    # The other process caches the index's view and unwrapped key.
    assert (await second_process.post("/vectors/query", json={**old, **query})).is_success
    assert (await _read(second_process, old)).is_success
    new = {**index, "index_key": secrets.token_hex(32)}
    await _rotate(client, **old, new_index_key=new["index_key"])
    for request in (new, old):  # the new key first meets the stale cached view
        got = await second_process.post("/vectors/query", json={**request, **query})
        assert got.status_code == (401 if request is old else 200), got.text
        assert (await _read(second_process, request)).status_code == got.status_code


async def test_old_key_is_refused_in_another_process_that_cached_the_index(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    old = {**index, "index_key": index_key}
    query = {"query_vectors": [1, 0, 0, 0], "top_k": 1}
    assert (await second_process.post("/vectors/query", json={**old, **query})).is_success
    await _rotate(client, **old, new_index_key=secrets.token_hex(32))
    got = await second_process.post("/vectors/query", json={**old, **query})
    assert got.status_code == 401, got.text


async def test_cli_rotate_index(
    client: httpx.AsyncClient, database_url: str, kms_config: Any, index_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIPHERVEC_DATABASE_URL", database_url)
    monkeypatch.setenv("CIPHERVEC_KMS_CONFIG", str(kms_config))
    index = await _create(client, index_key=index_key)
    # The command runs its own event loop, so it gets a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, cli, [
        "keys", "rotate-index", "--tenant", "tests", "--index", index["index_name"],
        "--index-key", index_key, "--new-kms", "local-a",
    ])
    assert result.exit_code == 0, result.output
    assert "provider=local, key_version=2" in result.output
    assert (await _read(client, index)).status_code == 200


async def test_rotation_whose_wrap_fails_changes_nothing(
    client: httpx.AsyncClient, db: Database, moto_kms: MotoKms, index_key: str
) -> None:
    index = await _create(client, index_key=index_key)
    moto_kms.stop()
    try:
        response = await _rotate(client, **index, index_key=index_key, new_kms_name="aws-b")
        assert response.status_code == 503
    finally:
        moto_kms.start()
    async with db.transaction() as conn:
        stored = (await conn.execute(select(indexes.c.key_provider, indexes.c.key_version)
                                     .where(indexes.c.name == index["index_name"]))).one()
    assert tuple(stored) == ("sdk", 1)
    assert (await _read(client, {**index, "index_key": index_key})).status_code == 200
