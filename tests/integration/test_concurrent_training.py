"""A train request while another job (training, compaction) holds the index: it waits
for that job, past the statement timeout, and answers 409 only after
`train_wait_s`, 404 if the index is deleted meanwhile; never 500. A run that
trained everything the request found is not repeated."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text

from app.config import Settings
from app.engine.locking import maintenance_lock
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.services.training import TrainParams, run_locked
from app.store.db import Database
from tests.support.app_client import app_client

DIMENSION = 4
TRAIN = {"n_lists": 2, "batch_size": 2048, "max_iters": 5, "tolerance": 1e-6, "max_memory": 0}


@asynccontextmanager
async def _service(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, api_key=api_key, raise_app_exceptions=False) as http:
        yield http


async def _filled_index(http: httpx.AsyncClient) -> dict[str, Any]:
    index = {"index_name": f"train-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    created = await http.post("/indexes/create", json={**index, "dimension": DIMENSION})
    assert created.status_code == 200, created.text
    vectors = np.random.default_rng(3).normal(size=(40, DIMENSION)).tolist()
    items = [{"id": f"v{i}", "vector": v} for i, v in enumerate(vectors)]
    assert (await http.post("/vectors/upsert", json={**index, "items": items})).is_success
    return index


def _job_holding(
    settings: Settings, index: dict[str, Any], *, trains: bool = False
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """What another training or compaction does to the index: hold its maintenance
    lock; with `trains`, train the index into 2 lists before letting go of it."""

    @asynccontextmanager
    async def holding() -> AsyncIterator[None]:
        ctx = ServiceContext.build(settings)
        try:
            async with ctx.db.transaction() as conn:
                opened = await open_index(conn, ctx, "tests", index["index_name"],
                                          bytes.fromhex(index["index_key"]))
            async with maintenance_lock(ctx, opened.row.id) as held:
                assert held
                yield
                if trains:
                    await run_locked(ctx, opened.cipher, opened.row, TrainParams(n_lists=2))
        finally:
            await ctx.close()

    return holding


async def _active_version(db: Database, index: dict[str, Any]) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(
            text("SELECT active_version FROM indexes WHERE name = :name"),
            {"name": index["index_name"]},
        )
        return int(result.scalar_one())


async def test_a_train_waits_for_the_running_job_beyond_the_statement_timeout(
    settings: Settings, api_key: str
) -> None:
    quick = settings.model_copy(update={"db_statement_timeout_ms": 1000})
    async with _service(quick, api_key) as http:
        index = await _filled_index(http)
        async with _job_holding(quick, index)():
            train = asyncio.create_task(http.post("/indexes/train", json={**index, **TRAIN}))
            await asyncio.sleep(2.5)
            assert not train.done()
        response = await train

    assert response.status_code == 200, response.text
    assert response.json()["message"] == f"Index '{index['index_name']}' trained successfully"


async def test_two_trains_of_one_index_both_succeed(settings: Settings, api_key: str) -> None:
    async with _service(settings, api_key) as http:
        index = await _filled_index(http)
        responses = await asyncio.gather(*(
            http.post("/indexes/train", json={**index, **TRAIN}) for _ in range(2)
        ))

    assert [r.status_code for r in responses] == [200, 200]


async def test_a_train_answers_409_when_the_running_job_outlasts_train_wait_s(
    settings: Settings, api_key: str
) -> None:
    impatient = settings.model_copy(update={"train_wait_s": 0.5})
    async with _service(impatient, api_key) as http:
        index = await _filled_index(http)
        async with _job_holding(impatient, index)():
            response = await http.post("/indexes/train", json={**index, **TRAIN})

    assert response.status_code == 409
    assert "still being trained or compacted" in response.json()["detail"]


async def test_a_train_waiting_on_an_index_that_is_deleted_answers_404(
    settings: Settings, api_key: str
) -> None:
    async with _service(settings, api_key) as http:
        index = await _filled_index(http)
        async with _job_holding(settings, index)():
            train = asyncio.create_task(http.post("/indexes/train", json={**index, **TRAIN}))
            await asyncio.sleep(0.3)
            deleted = await http.post("/indexes/delete", json=index)
            assert deleted.status_code == 200, deleted.text
            response = await asyncio.wait_for(train, timeout=30)

    assert response.status_code == 404


async def test_a_train_that_waited_for_a_run_covering_its_items_does_not_train_again(
    settings: Settings, api_key: str, db: Database
) -> None:
    async with _service(settings, api_key) as http:
        index = await _filled_index(http)
        async with _job_holding(settings, index, trains=True)():
            train = asyncio.create_task(http.post("/indexes/train", json={**index, **TRAIN}))
            await asyncio.sleep(0.3)
        response = await asyncio.wait_for(train, timeout=30)

    assert response.status_code == 200, response.text
    assert await _active_version(db, index) == 1


async def test_a_train_asking_other_lists_than_the_run_it_waited_for_trains_again(
    settings: Settings, api_key: str, db: Database
) -> None:
    async with _service(settings, api_key) as http:
        index = await _filled_index(http)
        async with _job_holding(settings, index, trains=True)():
            train = asyncio.create_task(
                http.post("/indexes/train", json={**index, **TRAIN, "n_lists": 3})
            )
            await asyncio.sleep(0.3)
        response = await asyncio.wait_for(train, timeout=30)

    assert response.status_code == 200, response.text
    assert await _active_version(db, index) == 2
