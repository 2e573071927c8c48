"""What a pg_dump of the database reveals: no ids, contents, metadata values or vectors."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import httpx
import numpy as np

from app.localpg import LocalPostgres


def _pg_dump(cluster: LocalPostgres, database: str) -> bytes:
    args = cluster.run_as_owner_args(
        [str(cluster.bin_dir / "pg_dump"), "--no-owner", cluster.libpq_url(database)]
    )
    return subprocess.run(args, check=True, capture_output=True, timeout=120).stdout


def _forms(secret: bytes) -> list[bytes]:
    """The ways a secret could show in a plain-format dump: raw, hex (bytea), base64."""
    return [secret, secret.hex().encode(), base64.b64encode(secret)]


async def test_pg_dump_holds_no_plaintext(
    client: httpx.AsyncClient, pg_cluster: LocalPostgres, index: dict[str, Any]
) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    items = [
        {"id": f"patient-{i:04d}-ssn", "vector": vectors[i].tolist(),
         "contents": f"confidential note number {i}",
         "metadata": {"diagnosis": f"condition-{i}-secret", "ward": "oncology-east"}}
        for i in range(50)
    ]
    assert (await client.post("/vectors/upsert", json={**index, "items": items})).status_code == 200
    await client.post(
        "/vectors/upsert", json={**index, "items": [{**items[0], "contents": "rewritten note"}]}
    )

    dump = _pg_dump(pg_cluster, "ciphervec_test")

    assert index["index_name"].encode() in dump  # the dump really holds this index
    secrets = [b"oncology-east", b"rewritten note", index["index_key"].encode()]
    for item in items:
        secrets += [item["id"].encode(), item["contents"].encode(),
                    item["metadata"]["diagnosis"].encode()]
    for secret in secrets:
        for form in _forms(secret):
            assert form not in dump, secret
    for vector in vectors:
        for form in _forms(vector.tobytes()):
            assert form not in dump
        assert repr(float(vector[0])).encode() not in dump  # nor as JSON text
