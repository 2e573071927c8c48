"""pg_dump of a live database, restored with pg_restore into a new database, serves
the same answers with the same keys; the dump itself holds no plaintext."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.localpg import LocalPostgres
from tests.support.app_client import app_client

DIMENSION = 16


def _owner_run(cluster: LocalPostgres, args: list[str]) -> None:
    subprocess.run(cluster.run_as_owner_args(args), check=True, capture_output=True, timeout=300)


@pytest.fixture
async def dump_file() -> AsyncIterator[Path]:
    """A path the cluster's owner can write a dump to, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ciphervec-dump-") as folder:
        Path(folder).chmod(0o777)  # noqa: S103 - pg_dump runs as the postgres user
        yield Path(folder) / "backup.dump"


async def _create_and_fill(client: httpx.AsyncClient, index: dict[str, str], n: int) -> list[
    dict[str, Any]
]:
    rng = np.random.default_rng(11)
    items = [
        {"id": f"doc-{i}", "vector": rng.normal(size=DIMENSION).tolist(),
         "contents": f"private text {i}", "metadata": {"owner": f"person-{i}"}}
        for i in range(n)
    ]
    assert (await client.post("/indexes/create", json={**index, "dimension": DIMENSION})).is_success
    assert (await client.post("/vectors/upsert", json={**index, "items": items})).is_success
    return items


async def _answers(client: httpx.AsyncClient, index: dict[str, str],
                   queries: np.ndarray) -> list[list[tuple[str, float]]]:
    response = await client.post("/vectors/query", json={
        **index, "query_vectors": queries.tolist(), "top_k": 5, "include": ["distance"],
    })
    assert response.status_code == 200, response.text
    return [[(hit["id"], round(hit["distance"], 5)) for hit in hits]
            for hits in response.json()["results"]]


async def test_a_dump_taken_during_writes_restores_to_the_same_answers_without_plaintext(
    client: httpx.AsyncClient, pg_cluster: LocalPostgres, settings: Settings,
    api_key: str, dump_file: Path,
) -> None:
    steady = {"index_name": f"steady-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    busy = {"index_name": f"busy-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    items = await _create_and_fill(client, steady, 3_000)
    assert (await client.post("/indexes/train", json={**steady, "n_lists": 16})).is_success
    await _create_and_fill(client, busy, 10)
    queries = np.random.default_rng(5).normal(size=(20, DIMENSION))
    before = await _answers(client, steady, queries)

    stop = asyncio.Event()

    async def keep_writing() -> int:
        batches = 0
        while not stop.is_set():
            batch = [{"id": f"live-{batches}-{i}", "vector": [float(batches)] * DIMENSION}
                     for i in range(100)]
            assert (await client.post("/vectors/upsert", json={**busy, "items": batch})).is_success
            batches += 1
        return batches

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.2)
    await asyncio.to_thread(_owner_run, pg_cluster, [
        str(pg_cluster.bin_dir / "pg_dump"), "-Fc", "-Z0", "--no-owner",
        "-f", str(dump_file), pg_cluster.libpq_url("ciphervec_test"),
    ])
    stop.set()
    assert await writer > 0

    dump = dump_file.read_bytes()
    for item in items[:200]:
        for secret in (item["id"], item["contents"], item["metadata"]["owner"]):
            for form in (secret.encode(), secret.encode().hex().encode(),
                         base64.b64encode(secret.encode())):
                assert form not in dump, secret
        assert np.asarray(item["vector"], dtype=np.float32).tobytes() not in dump

    restored_name = f"restored_{secrets.token_hex(4)}"
    restored_url = pg_cluster.create_database(restored_name)
    _owner_run(pg_cluster, [
        str(pg_cluster.bin_dir / "pg_restore"), "--no-owner", "--exit-on-error",
        "-d", pg_cluster.libpq_url(restored_name), str(dump_file),
    ])
    async with app_client(settings.model_copy(update={"database_url": restored_url}),
                          api_key=api_key, base_url="http://restored/v1") as restored:
        assert await _answers(restored, steady, queries) == before
        listed = (await restored.post("/vectors/list_ids", json=busy)).json()["ids"]
        count = (await restored.post("/vectors/num_vectors", json=busy)).json()["result"]
        assert count == len(listed) >= 10
        # The dump is one snapshot: every batch it holds is whole.
        assert (len(listed) - 10) % 100 == 0
        got = (await restored.post("/vectors/get", json={**busy, "ids": listed})).json()
        assert len(got["results"]) == len(listed)
