"""With PostgreSQL down, requests fail fast with 503; when it is back, the same
service process serves again without a restart."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import migrate
from app.localpg import LocalPostgres
from app.services import auth
from app.store.db import Database
from tests.support.process import running_service

# A 503 must come well within this; a hang would run into the client timeout.
BOUND_S = 10.0


@pytest.fixture
def own_cluster() -> Iterator[tuple[LocalPostgres, str]]:
    """A migrated cluster of this test's own, which it may stop and start: (cluster, url)."""
    root = Path(tempfile.mkdtemp(prefix="ciphervec-outage-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    cluster = LocalPostgres(root / "pg", fast=True)
    cluster.start()
    try:
        url = cluster.url()
        migrate.upgrade(url)
        yield cluster, url
    finally:
        cluster.destroy()
        root.rmdir()


def _timed_post(http: httpx.Client, path: str, body: dict[str, object]) -> tuple[int, float]:
    started = time.monotonic()
    response = http.post(path, json=body)
    return response.status_code, time.monotonic() - started


async def test_requests_get_a_prompt_503_while_the_database_is_down_and_succeed_after(
    own_cluster: tuple[LocalPostgres, str],
) -> None:
    cluster, url = own_cluster
    db = Database(url)
    key = (await auth.create_api_key(db, name="outage")).secret
    await db.dispose()
    index = {"index_name": "outage", "index_key": secrets.token_hex(32)}
    item = {"id": "a", "vector": [1.0, 2.0, 3.0]}
    with running_service(url) as service, httpx.Client(
        base_url=service.url, headers={"X-API-Key": key}, timeout=60
    ) as http:
        assert http.post("/indexes/create", json={**index, "dimension": 3}).status_code == 200
        assert http.post("/vectors/upsert", json={**index, "items": [item]}).status_code == 200

        cluster.stop()
        requests: list[tuple[str, dict[str, object]]] = [
            ("/vectors/query", {**index, "query_vectors": item["vector"], "top_k": 1}),
            ("/vectors/upsert", {**index, "items": [{"id": "b", "vector": [0, 0, 0]}]}),
            ("/indexes/describe", {**index}),
        ]
        for path, body in requests:
            status, took = _timed_post(http, path, body)
            assert status == 503, path
            assert took < BOUND_S, path
        assert http.post("/vectors/num_vectors", json=index).headers.get("Retry-After")

        cluster.start()
        deadline = time.monotonic() + 30
        while http.post("/indexes/describe", json=index).status_code != 200:
            assert time.monotonic() < deadline, "service did not recover"
            time.sleep(0.2)
        hits = http.post("/vectors/query", json={
            **index, "query_vectors": item["vector"], "top_k": 5,
        }).json()["results"]
        assert [hit["id"] for hit in hits] == ["a"]
        assert http.post("/vectors/upsert", json={
            **index, "items": [{"id": "b", "vector": [0, 0, 0]}],
        }).status_code == 200
