"""A service process killed with SIGKILL mid-stream loses no acknowledged write and
leaves no half-written batch; a new process serves everything."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
import numpy as np

from tests.support.process import running_service

DIMENSION = 8
BATCH = 50


def _batch(number: int) -> list[dict[str, Any]]:
    vectors = np.random.default_rng(number).normal(size=(BATCH, DIMENSION))
    return [
        {"id": f"b{number}-{row}", "vector": vectors[row].tolist(),
         "contents": f"contents {number}/{row}", "metadata": {"batch": number}}
        for row in range(BATCH)
    ]


class _Writer(threading.Thread):
    """Upserts numbered batches until the service dies; remembers what was acknowledged."""

    def __init__(self, url: str, api_key: str, index: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.api_key, self.index = url, api_key, index
        self.acknowledged: list[int] = []
        self.unanswered: int | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.api_key},
                          timeout=30) as http:
            number = 0
            while True:
                try:
                    response = http.post("/vectors/upsert",
                                         json={**self.index, "items": _batch(number)})
                except httpx.HTTPError:
                    self.unanswered = number
                    return
                assert response.status_code == 200, response.text
                self.acknowledged.append(number)
                number += 1


def test_acknowledged_upserts_survive_a_sigkill_and_no_batch_is_half_written(
    database_url: str, api_key: str
) -> None:
    index = {"index_name": f"crash-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    headers = {"X-API-Key": api_key}
    with running_service(database_url) as first:
        created = httpx.post(f"{first.url}/indexes/create", headers=headers,
                             json={**index, "dimension": DIMENSION})
        assert created.status_code == 200, created.text
        writer = _Writer(first.url, api_key, index)
        writer.start()
        deadline = time.monotonic() + 30
        while len(writer.acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
        writer.join(timeout=30)
    assert len(writer.acknowledged) >= 20 and writer.unanswered is not None

    with running_service(database_url) as second, httpx.Client(
        base_url=second.url, headers=headers, timeout=30
    ) as http:
        listed = http.post("/vectors/list_ids", json=index).json()["ids"]
        stored_batches = {item_id.split("-")[0][1:] for item_id in listed}
        expected = {str(n) for n in writer.acknowledged}
        # The batch in flight at the kill either committed whole or not at all.
        assert stored_batches - expected <= {str(writer.unanswered)}
        assert expected <= stored_batches
        assert len(listed) == BATCH * len(stored_batches)
        assert http.post("/vectors/num_vectors", json=index).json()["result"] == len(listed)

        sent = {item["id"]: item for n in writer.acknowledged for item in _batch(n)}
        got = http.post("/vectors/get", json={
            **index, "ids": list(sent), "include": ["vector", "contents", "metadata"],
        }).json()["results"]
        assert len(got) == len(sent)
        for item in got:
            original = sent[item["id"]]
            assert np.allclose(item["vector"], original["vector"], atol=1e-6)
            assert item["contents"] == original["contents"]
            assert item["metadata"] == original["metadata"]

        probe = sent["b3-7"]
        hits = http.post("/vectors/query", json={
            **index, "query_vectors": probe["vector"], "top_k": 1,
        }).json()["results"]
        assert [hit["id"] for hit in hits] == ["b3-7"]
