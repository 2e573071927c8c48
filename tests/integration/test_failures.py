"""Failures below the API: a failed COMMIT is never acknowledged, a missing database is a 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app import migrate
from app.config import Settings
from app.localpg import LocalPostgres
from app.services import auth
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.server import free_port

_FAIL_AT_COMMIT = (
    """CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'refused at commit'; END $$""",
    """CREATE CONSTRAINT TRIGGER items_fail_at_commit AFTER INSERT ON items
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()""",
)


@pytest.fixture(scope="module")
async def commit_failing_url(pg_cluster: LocalPostgres) -> str:
    """A database whose COMMIT of any item insert fails (a deferred constraint trigger)."""
    url = pg_cluster.create_database("commit_fails")
    await asyncio.to_thread(migrate.upgrade, url)
    database = Database(url)
    async with database.transaction() as conn:
        for statement in _FAIL_AT_COMMIT:
            await conn.execute(text(statement))
    await database.dispose()
    return url


async def _client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    database = Database(url)
    key = (await auth.create_api_key(database, name="failing", tenant="failing")).secret
    await database.dispose()
    # Starlette re-raises a 500's exception after answering; the client must see the answer.
    async with app_client(Settings(database_url=url), api_key=key,
                          raise_app_exceptions=False) as client:
        yield client


async def test_failed_commit_is_a_server_error_and_stores_nothing(
    commit_failing_url: str, index_key: str
) -> None:
    async for client in _client(commit_failing_url):
        body: dict[str, Any] = {"index_name": "fragile", "index_key": index_key}
        assert (await client.post("/indexes/create", json={**body, "dimension": 2})).is_success
        upsert = await client.post(
            "/vectors/upsert", json={**body, "items": [{"id": "a", "vector": [1, 2]}]}
        )
        assert upsert.status_code == 500
        assert upsert.json() == {"detail": "Internal server error"}
        assert (await client.post("/vectors/num_vectors", json=body)).json() == {"result": 0}


async def test_unhandled_error_answers_with_the_request_id(
    commit_failing_url: str, index_key: str
) -> None:
    async for client in _client(commit_failing_url):
        body: dict[str, Any] = {"index_name": "fragile-id", "index_key": index_key}
        assert (await client.post("/indexes/create", json={**body, "dimension": 2})).is_success
        upsert = await client.post(
            "/vectors/upsert", json={**body, "items": [{"id": "a", "vector": [1, 2]}]},
            headers={"X-Request-Id": "failing-upsert-1"},
        )
        assert upsert.status_code == 500
        assert upsert.headers["X-Request-Id"] == "failing-upsert-1"


async def test_unreachable_database_is_service_unavailable() -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    async with app_client(Settings(database_url=url, db_connect_timeout_s=2)) as client:
        response = await client.get("/indexes/list", headers={"X-API-Key": "cv_0123456789ab_x"})
    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable, try again shortly"}
    assert response.headers["Retry-After"]
