"""A heavy request (within the limits) leaves the event loop free: other requests,
health checks included, keep being served while it works.

The measure is the longest gap a ticker task on the same loop sees while the
heavy request runs, relative to that request's own duration: a request that
holds the loop for its whole work leaves one gap as long as itself.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.support.app_client import app_client

DIMENSION = 64
ITEMS = 20_000


@pytest.fixture(scope="module")
async def untrained(settings: Settings, api_key: str) -> AsyncIterator[
    tuple[httpx.AsyncClient, dict[str, Any]]
]:
    """A client and an untrained index of 20,000 x 64 vectors with a little metadata."""
    async with app_client(
        settings.model_copy(update={"auto_train": False}), api_key=api_key
    ) as http:
        body = {"index_name": f"stalls-{uuid.uuid4().hex[:8]}", "index_key": secrets.token_hex(32)}
        created = await http.post("/indexes/create", json={**body, "dimension": DIMENSION})
        assert created.status_code == 200, created.text
        rng = np.random.default_rng(3)
        for start in range(0, ITEMS, 5_000):
            rows = rng.normal(size=(5_000, DIMENSION)).astype(np.float32)
            batch = {
                "ids": [f"s{i}" for i in range(start, start + 5_000)],
                "vectors_b64": base64.b64encode(rows.tobytes()).decode(),
                "dimension": DIMENSION,
                "metadata": [{"n": i} for i in range(start, start + 5_000)],
            }
            stored = await http.post("/vectors/upsert_binary", json={**body, "batch": batch})
            assert stored.status_code == 200, stored.text
        yield http, body


async def _longest_stall(request: Awaitable[httpx.Response]) -> tuple[float, float, int]:
    """(longest loop gap, request duration, status) while `request` runs."""
    done = False
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    response = await request
    duration = time.perf_counter() - started
    done = True
    await ticker
    return longest, duration, response.status_code


async def test_a_large_batch_query_leaves_the_event_loop_free(
    untrained: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    http, body = untrained
    queries = np.random.default_rng(4).normal(size=(2_000, DIMENSION)).astype(np.float32)
    batch = {"vectors_b64": base64.b64encode(queries.tobytes()).decode(), "dimension": DIMENSION}
    longest, duration, status = await _longest_stall(http.post(
        "/vectors/query_binary",
        json={**body, "batch": batch, "top_k": 50, "include": ["distance", "metadata"]},
    ))
    assert status == 200
    assert longest < duration / 4, (longest, duration)


async def test_a_large_get_leaves_the_event_loop_free(
    untrained: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    http, body = untrained
    ids = [f"s{i}" for i in range(ITEMS)] + [f"missing-{i}" for i in range(ITEMS)]
    longest, duration, status = await _longest_stall(http.post(
        "/vectors/get", json={**body, "ids": ids, "include": ["vector", "metadata"]},
    ))
    assert status == 200
    assert longest < duration / 4, (longest, duration)
