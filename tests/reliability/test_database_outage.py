"""With PostgreSQL down, requests fail fast with 503; when it is back, the same
service process serves again without a restart. PostgreSQL stopping or starting
while requests are in flight gives 503s too, never a 500."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import pytest

from app import migrate
from app.config import Settings
from app.localpg import LocalPostgres
from app.services import auth
from app.store.db import Database
from tests.support.app_client import app_client
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


async def _api_key(url: str) -> str:
    db = Database(url)
    try:
        return (await auth.create_api_key(db, name="outage")).secret
    finally:
        await db.dispose()


def _timed_post(http: httpx.Client, path: str, body: dict[str, object]) -> tuple[int, float]:
    started = time.monotonic()
    response = http.post(path, json=body)
    return response.status_code, time.monotonic() - started


async def test_requests_get_a_prompt_503_while_the_database_is_down_and_succeed_after(
    own_cluster: tuple[LocalPostgres, str],
) -> None:
    cluster, url = own_cluster
    key = await _api_key(url)
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


@dataclass(frozen=True)
class _Answer:
    path: str
    status: int | None
    retry_after: str | None
    body: str


async def _one_round(
    http: httpx.AsyncClient, index: dict[str, str], client_no: int, round_no: int
) -> list[_Answer]:
    """Upsert, query, get, describe and delete one of this client's own items."""
    item_id = f"c{client_no}-{round_no % 4}"
    vector = [float(client_no), float(round_no % 7), 1.0]
    requests: list[tuple[str, dict[str, object]]] = [
        ("/vectors/upsert", {**index, "items": [{"id": item_id, "vector": vector}]}),
        ("/vectors/query", {**index, "query_vectors": vector, "top_k": 3}),
        ("/vectors/get", {**index, "ids": [item_id]}),
        ("/indexes/describe", {**index}),
        ("/vectors/delete", {**index, "ids": [item_id]}),
    ]
    answers = []
    for path, body in requests:
        try:
            response = await http.post(path, json=body)
        except httpx.TransportError as error:
            # uvicorn closes the connection after an unhandled error (a 500).
            answers.append(_Answer(path, None, None, repr(error)))
            continue
        answers.append(_Answer(
            path, response.status_code, response.headers.get("Retry-After"), response.text[:300]
        ))
    return answers


async def _keep_requesting(
    http: httpx.AsyncClient, index: dict[str, str], client_no: int, stop: asyncio.Event
) -> list[_Answer]:
    """Rounds of requests until `stop` is set."""
    answers: list[_Answer] = []
    round_no = 0
    while not stop.is_set():
        round_no += 1
        answers += await _one_round(http, index, client_no, round_no)
    return answers


# Fast shutdown ends sessions with "terminating connection due to administrator
# command" and refuses new ones while it runs; immediate shutdown drops them as
# a crash would, and the restart runs crash recovery ("starting up").
_RESTARTS: tuple[Literal["fast", "immediate"], ...] = ("fast", "immediate") * 3


async def test_requests_while_the_database_stops_and_starts_answer_200_or_503_never_500(
    own_cluster: tuple[LocalPostgres, str],
) -> None:
    cluster, url = own_cluster
    key = await _api_key(url)
    index = {"index_name": "restarts", "index_key": secrets.token_hex(32)}
    with running_service(url) as service:
        async with httpx.AsyncClient(
            base_url=service.url, headers={"X-API-Key": key}, timeout=60
        ) as http:
            created = await http.post("/indexes/create", json={**index, "dimension": 3})
            assert created.status_code == 200
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_keep_requesting(http, index, n, stop)) for n in range(4)
            ]
            for mode in _RESTARTS:
                await asyncio.sleep(0.4)
                await asyncio.to_thread(cluster.stop, mode)
                await asyncio.sleep(0.2)
                await asyncio.to_thread(cluster.start)
            await asyncio.sleep(0.4)
            stop.set()
            answers = [answer for done in await asyncio.gather(*clients) for answer in done]

            unexpected = [a for a in answers if a.status not in (200, 503)]
            assert not unexpected, (len(unexpected), len(answers), unexpected[:5])
            assert all(a.retry_after for a in answers if a.status == 503)
            assert any(a.status == 503 for a in answers), "no request met a restart"
            deadline = time.monotonic() + 30
            while {a.status for a in await _one_round(http, index, 0, 0)} != {200}:
                assert time.monotonic() < deadline, "service did not recover"
                await asyncio.sleep(0.2)


async def test_readiness_follows_the_database_while_liveness_stays_healthy(
    own_cluster: tuple[LocalPostgres, str],
) -> None:
    cluster, url = own_cluster
    async with app_client(Settings(database_url=url)) as http:
        health = (await http.get("/health")).json()
        assert (await http.get("/ready")).status_code == 200

        cluster.stop()
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["Retry-After"]
        assert (await http.get("/health")).json() == health

        cluster.start()
        assert (await http.get("/ready")).status_code == 200
        assert (await http.get("/health")).json() == health
