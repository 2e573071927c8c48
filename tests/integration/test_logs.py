"""Logs are JSON lines carrying the request id, and never a key or plaintext; library
warnings are JSON lines too."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.store.db import Database
from tests.support.logcapture import Captured, captured_logs


@pytest.fixture
def logs() -> Iterator[Captured]:
    with captured_logs() as captured:
        yield captured


ITEMS = [
    {"id": f"zebra-ident-{n:03d}", "vector": [float(n), 1.0, 2.0, 3.0],
     "contents": f"marmalade confession {n}",
     "metadata": {"quokka_field": f"wombat-value-{n}", "ward": "heliotrope-east"}}
    for n in range(30)
]


async def _corrupt_items(db: Database, index_name: str) -> None:
    """Flip one byte of every stored payload of the index, as a broken disk would."""
    async with db.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE items SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1) "
                "WHERE index_id = (SELECT id FROM indexes WHERE name = :name)"
            ),
            {"name": index_name},
        )


@pytest.fixture
async def traffic(
    client: httpx.AsyncClient, index: dict[str, Any], db: Database, logs: Captured
) -> list[httpx.Response]:
    """Upsert, query, get, a wrong index key, and a read of corrupted data, logged."""
    responses = [
        await client.post("/vectors/upsert", json={**index, "items": ITEMS}),
        await client.post("/vectors/query", json={
            **index, "query_vectors": [1.0, 1.0, 2.0, 3.0], "top_k": 5,
            "include": ["metadata", "contents", "vector"],
            "filters": {"ward": "heliotrope-east"},
        }),
        await client.post("/vectors/get", json={**index, "ids": [ITEMS[0]["id"]]}),
        await client.post("/vectors/get", json={
            **index, "index_key": "ab" * 32, "ids": [ITEMS[1]["id"]],
        }),
    ]
    await _corrupt_items(db, index["index_name"])
    responses.append(await client.post("/vectors/get", json={**index, "ids": [ITEMS[2]["id"]]}))
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 500]
    return responses


def test_logs_hold_no_key_id_contents_or_metadata(
    traffic: list[httpx.Response], logs: Captured, index: dict[str, Any], api_key: str
) -> None:
    secrets = [api_key, index["index_key"], index["index_key"].upper(), "ab" * 32,
               "heliotrope-east", "quokka_field", "zebra-ident", "marmalade", "wombat-value"]
    text_of_logs = "\n".join(logs.lines())
    assert "Stored item failed authentication" in text_of_logs  # the error path did log
    assert "Traceback" in text_of_logs
    for secret in secrets:
        assert secret not in text_of_logs


def test_every_line_is_json_with_the_request_id(
    traffic: list[httpx.Response], logs: Captured
) -> None:
    records = logs.records()
    assert records
    sent = {response.headers["X-Request-Id"] for response in traffic}
    assert len(sent) == len(traffic)
    assert {record["request_id"] for record in records} == sent


def test_each_request_gets_one_access_line(
    traffic: list[httpx.Response], logs: Captured
) -> None:
    access = [r for r in logs.records() if r["logger"] == "ciphervec.access"]
    assert [(r["route"], r["status"]) for r in access] == [
        ("/v1/vectors/upsert", 200), ("/v1/vectors/query", 200), ("/v1/vectors/get", 200),
        ("/v1/vectors/get", 401), ("/v1/vectors/get", 500),
    ]
    assert all(r["method"] == "POST" and r["duration_ms"] >= 0 for r in access)
    assert [r["request_id"] for r in access] == [t.headers["X-Request-Id"] for t in traffic]


async def test_a_sane_client_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-Id": "trace-42.a:b_c"})
    assert response.headers["X-Request-Id"] == "trace-42.a:b_c"


async def test_an_unsafe_client_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-Id": 'x" injected=1'})
    assert response.headers["X-Request-Id"] != 'x" injected=1'
    assert len(response.headers["X-Request-Id"]) == 24


def test_library_warnings_are_json_lines_like_the_rest() -> None:
    # In a process of its own: pytest replaces warnings.showwarning in its tests.
    script = (
        "import numpy as np\n"
        "from app.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "np.log(np.zeros(1))\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(r["logger"], r["level"]) for r in records] == [("py.warnings", "warning")]
    assert "RuntimeWarning: divide by zero encountered in log" in records[0]["event"]
