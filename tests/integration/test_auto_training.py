"""Auto-training waits for a pause in an index's writes (at most a maximum delay),
so that a bulk load is trained once, on all of its items, and it does not repeat
what a train request did meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text

from app.config import Settings
from app.engine.locking import maintenance_lock
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.recall import create_index, upsert_vectors

THRESHOLD = 500


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 32)).astype(np.float32)


@asynccontextmanager
async def _service(
    settings: Settings, api_key: str, **overrides: float
) -> AsyncIterator[httpx.AsyncClient]:
    """An app that auto-trains at THRESHOLD items, with `overrides` of its settings."""
    eager = settings.model_copy(update={"auto_train_threshold": THRESHOLD, **overrides})
    async with app_client(eager, api_key=api_key) as http:
        yield http


async def _training_state(db: Database, body: dict[str, Any]) -> tuple[int, int]:
    """The index's active version and the items its last training covered."""
    async with db.transaction() as conn:
        row = (await conn.execute(
            text("SELECT active_version, trained_vectors FROM indexes WHERE name = :name"),
            {"name": body["index_name"]},
        )).one()
    return int(row[0]), int(row[1])


async def _trained(db: Database, body: dict[str, Any], within_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + within_s
    while (state := await _training_state(db, body))[0] == 0:
        assert time.monotonic() < deadline, "auto-training did not run"
        await asyncio.sleep(0.05)
    return state


async def test_auto_training_waits_for_the_writes_to_pause_and_covers_them_all(
    settings: Settings, api_key: str, db: Database, index_name: str, index_key: str
) -> None:
    async with _service(settings, api_key, auto_train_quiet_s=1.0) as http:
        body = await create_index(http, index_name, index_key)
        first = await upsert_vectors(http, body, _vectors(600))
        assert first.json()["training_triggered"] is True
        for step in range(10):
            await upsert_vectors(http, body, _vectors(20, seed=step + 1), start=600 + 20 * step)
            await asyncio.sleep(0.1)
            assert await _training_state(db, body) == (0, 0)
        assert await _trained(db, body, within_s=30) == (1, 800)


async def test_auto_training_starts_after_its_maximum_delay_under_unending_writes(
    settings: Settings, api_key: str, db: Database, index_name: str, index_key: str
) -> None:
    async with _service(settings, api_key, auto_train_quiet_s=60,
                        auto_train_max_delay_s=0.5) as http:
        body = await create_index(http, index_name, index_key)
        await upsert_vectors(http, body, _vectors(600))
        step = 0
        while (await _training_state(db, body))[0] == 0:
            assert step < 300, "auto-training did not start while writes went on"
            await upsert_vectors(http, body, _vectors(5, seed=step + 1), start=600 + 5 * step)
            await asyncio.sleep(0.05)
            step += 1


async def test_auto_training_does_not_repeat_a_train_request_made_during_its_wait(
    settings: Settings, api_key: str, db: Database, index_name: str, index_key: str
) -> None:
    async with _service(settings, api_key, auto_train_quiet_s=0.5) as http:
        body = await create_index(http, index_name, index_key)
        await upsert_vectors(http, body, _vectors(600))
        trained = await http.post("/indexes/train", json={**body, "n_lists": 8})
        assert trained.status_code == 200, trained.text
        await asyncio.sleep(1.5)
        assert await _training_state(db, body) == (1, 600)


async def test_a_due_training_runs_once_the_job_holding_the_index_lets_go(
    settings: Settings, api_key: str, db: Database, index_name: str, index_key: str
) -> None:
    async with _service(settings, api_key, auto_train_quiet_s=0.2) as http:
        body = await create_index(http, index_name, index_key)
        other = ServiceContext.build(settings)
        try:
            async with other.db.transaction() as conn:
                opened = await open_index(conn, other, "tests", index_name,
                                          bytes.fromhex(index_key))
            async with maintenance_lock(other, opened.row.id) as held:
                assert held
                await upsert_vectors(http, body, _vectors(600))
                await asyncio.sleep(1.0)
                assert await _training_state(db, body) == (0, 0)
        finally:
            await other.close()
        assert await _trained(db, body, within_s=30) == (1, 600)
