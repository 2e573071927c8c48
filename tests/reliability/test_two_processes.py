"""Two service processes on one database: each sees the other's writes at once
(cached views are checked against row versions) and training is single-flight."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from app.store.db import Database
from tests.support.process import ServiceProcess, running_service

DIMENSION = 8

VERSION_AND_ENTRIES = text(
    "SELECT i.active_version, b.version, sum(b.n_vectors)::bigint "
    "FROM indexes i JOIN vector_blocks b ON b.index_id = i.id "
    "WHERE i.name = :name GROUP BY i.active_version, b.version"
)


@pytest.fixture(scope="module")
def two_services(database_url: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two independent service processes, auto-training off so tests train explicitly."""
    with running_service(database_url, auto_train="false") as first, running_service(
        database_url, auto_train="false"
    ) as second:
        yield first, second


def _client(service: ServiceProcess, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"X-API-Key": api_key}, timeout=120)


def _index() -> dict[str, str]:
    return {"index_name": f"pair-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}


def _top_ids(http: httpx.Client, index: dict[str, str], vector: list[float]) -> list[str]:
    response = http.post("/vectors/query", json={**index, "query_vectors": vector, "top_k": 3})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def test_writes_and_deletes_in_one_process_are_seen_at_once_by_the_other(
    two_services: tuple[ServiceProcess, ServiceProcess], api_key: str
) -> None:
    index = _index()
    with _client(two_services[0], api_key) as first, _client(two_services[1], api_key) as second:
        assert first.post("/indexes/create", json={**index, "dimension": DIMENSION}).is_success
        far, near = [0.0] * DIMENSION, [5.0] * DIMENSION
        first.post("/vectors/upsert", json={**index, "items": [{"id": "far", "vector": far}]})
        assert _top_ids(second, index, near) == ["far"]  # second caches its view now

        first.post("/vectors/upsert", json={**index, "items": [{"id": "near", "vector": near}]})
        assert _top_ids(second, index, near) == ["near", "far"]

        second.post("/vectors/delete", json={**index, "ids": ["near"]})
        assert _top_ids(first, index, near) == ["far"]
        assert first.post("/vectors/get", json={**index, "ids": ["near"]}).json()["results"] == []


async def test_training_runs_requested_through_both_processes_at_once_run_one_after_the_other(
    two_services: tuple[ServiceProcess, ServiceProcess], api_key: str, db: Database
) -> None:
    index = _index()
    vectors = np.random.default_rng(2).normal(size=(6_000, DIMENSION))
    with _client(two_services[0], api_key) as first, _client(two_services[1], api_key) as second:
        assert first.post("/indexes/create", json={**index, "dimension": DIMENSION}).is_success
        items = [{"id": str(i), "vector": v.tolist()} for i, v in enumerate(vectors)]
        assert first.post("/vectors/upsert", json={**index, "items": items}).is_success

        # Different list counts, so that the second run does not stand on the first's.
        def train(http: httpx.Client, n_lists: int) -> int:
            return http.post("/indexes/train", json={
                **index, "n_lists": n_lists, "max_iters": 30, "tolerance": 0,
            }).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(train, [first, second], [32, 48]))
        assert statuses == [200, 200]
        assert _top_ids(second, index, vectors[17].tolist())[0] == "17"

    async with db.transaction() as conn:
        rows = (await conn.execute(VERSION_AND_ENTRIES, {"name": index["index_name"]})).all()
    # Run one built version 1, run two version 2 (had they overlapped, both would
    # have built version 1); only the active version's blocks remain, each entry once.
    assert [(int(a), int(v), int(n)) for a, v, n in rows] == [(2, 2, len(vectors))]


class _Writer:
    """Loops on small writes of its own ids through one process: upsert 10 new
    items, overwrite 5, delete 3; remembers what each acknowledged write left."""

    def __init__(self, http: httpx.Client, index: dict[str, str], name: str, seed: int) -> None:
        self.http, self.index, self.name = http, index, name
        self.rng = np.random.default_rng(seed)
        self.live: dict[str, list[float]] = {}
        self.deleted: set[str] = set()
        self.next_id = 0
        self.writes = 0

    def _upsert(self, ids: list[str]) -> None:
        vectors = self.rng.normal(size=(len(ids), DIMENSION)).tolist()
        items = [{"id": i, "vector": v} for i, v in zip(ids, vectors, strict=True)]
        response = self.http.post("/vectors/upsert", json={**self.index, "items": items})
        assert response.status_code == 200, response.text
        self.live.update(zip(ids, vectors, strict=True))
        self.deleted.difference_update(ids)

    def step(self) -> None:
        fresh = [f"{self.name}-{self.next_id + n}" for n in range(10)]
        self.next_id += 10
        self._upsert(fresh)
        known = sorted(self.live)
        picks = self.rng.choice(len(known), size=8, replace=False)
        self._upsert([known[p] for p in picks[:5]])
        gone = [known[p] for p in picks[5:]]
        response = self.http.post("/vectors/delete", json={**self.index, "ids": gone})
        assert response.status_code == 200, response.text
        for item_id in gone:
            self.live.pop(item_id)
            self.deleted.add(item_id)
        self.writes += 3


def test_training_finishes_under_small_writers_in_both_processes_and_keeps_every_write(
    two_services: tuple[ServiceProcess, ServiceProcess], api_key: str
) -> None:
    index = _index()
    base = np.random.default_rng(3).normal(size=(6_000, DIMENSION))
    clients = [_client(service, api_key) for service in (*two_services, two_services[0])]
    try:
        first = clients[0]
        assert first.post("/indexes/create", json={**index, "dimension": DIMENSION}).is_success
        items = [{"id": str(i), "vector": v.tolist()} for i, v in enumerate(base)]
        assert first.post("/vectors/upsert", json={**index, "items": items}).is_success
        assert first.post("/indexes/train", json={**index, "n_lists": 32}).is_success
        writers = [_Writer(http, index, f"w{n}", seed=n) for n, http in enumerate(clients)]
        for writer in writers:
            writer.step()  # each has items of its own before the run starts

        with ThreadPoolExecutor(len(writers) + 1) as pool:
            trained = pool.submit(lambda: clients[1].post("/indexes/train", json={
                **index, "n_lists": 48, "max_iters": 20, "tolerance": 0,
            }))

            def write_until_trained(writer: _Writer) -> None:
                while not trained.done():
                    writer.step()
                for _ in range(3):  # and a little after the switch
                    writer.step()

            for done in [pool.submit(write_until_trained, w) for w in writers]:
                done.result(timeout=600)
            assert trained.result().status_code == 200, trained.result().text
        # Writes went on while the run trained, read, caught up and switched.
        assert all(writer.writes > 3 * 4 for writer in writers)

        expected = {str(i): v.tolist() for i, v in enumerate(base)}
        for writer in writers:
            expected.update(writer.live)
        count = first.post("/vectors/num_vectors", json=index).json()["result"]
        assert count == len(expected)
        for n, writer in enumerate(writers):
            reader = clients[(n + 1) % len(clients)]
            got = reader.post("/vectors/get", json={
                **index, "ids": sorted(writer.live) + sorted(writer.deleted),
                "include": ["vector"],
            }).json()["results"]
            stored = {g["id"]: g["vector"] for g in got}
            assert sorted(stored) == sorted(writer.live)
            for item_id, vector in writer.live.items():
                assert np.allclose(stored[item_id], vector, rtol=1e-6, atol=1e-6)
            for item_id in sorted(writer.live)[:40]:
                hit = reader.post("/vectors/query", json={
                    **index, "query_vectors": writer.live[item_id], "top_k": 1, "n_probes": 48,
                }).json()["results"][0]
                assert hit["id"] == item_id
    finally:
        for http in clients:
            http.close()
