"""Property: after any interleaving of upserts, deletes, tail folds, compactions and
trainings, a query probing every list returns exactly what exact search returns."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.config import Settings
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.engine.tail import fold_tail
from app.ivf.distance import Metric
from app.services import search, training
from app.services import vectors as vector_service
from app.services.context import ServiceContext
from app.services.indexes import IndexSpec, create_index, open_index
from app.services.search import QuerySpec
from app.services.training import TrainParams
from app.services.vectors import ItemBatch

DIMENSION = 4
IDS = 30

_ids = st.lists(st.integers(0, IDS - 1), min_size=1, max_size=12, unique=True)
_operation = st.one_of(
    st.tuples(st.just("upsert"), _ids, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("delete"), _ids),
    st.tuples(st.just("fold")),
    st.tuples(st.just("compact")),
    st.tuples(st.just("train"), st.integers(2, 5)),
)


async def _scenario(base: Settings, operations: list[tuple[Any, ...]]) -> None:
    # A small tail and blocks, so that folds, overflows and merges all happen.
    ctx = ServiceContext.build(base.model_copy(update={
        "block_max_vectors": 16, "tail_max_blocks": 3, "tail_max_entries": 20,
        "tail_fold_blocks": 10_000, "tail_fold_entries": 10_000, "auto_train": False,
    }))
    name, key = f"prop-{secrets.token_hex(6)}", secrets.token_bytes(32)
    stored: dict[str, np.ndarray] = {}
    try:
        await create_index(ctx, "tests", IndexSpec(
            name=name, index_key=key, kms_name=None, dimension=DIMENSION,
            metric=Metric.EUCLIDEAN, embedding_model=None, metadata_schema=None,
        ))
        for operation in operations:
            await _apply(ctx, name, key, stored, operation)
            await _check(ctx, name, key, stored)
    finally:
        await ctx.close()


async def _apply(
    ctx: ServiceContext, name: str, key: bytes, stored: dict[str, np.ndarray],
    operation: tuple[Any, ...],
) -> None:
    kind = operation[0]
    if kind == "upsert":
        ids = [f"i{n}" for n in operation[1]]
        rng = np.random.default_rng(operation[2])
        rows = rng.normal(size=(len(ids), DIMENSION)).astype(np.float32)
        await vector_service.upsert(ctx, "tests", name, key, ItemBatch(
            ids=ids, vectors=rows, contents=[None] * len(ids), metadata=[None] * len(ids),
        ))
        stored.update(zip(ids, rows, strict=True))
    elif kind == "delete":
        ids = [f"i{n}" for n in operation[1]]
        await vector_service.delete_items(ctx, "tests", name, key, ids)
        for item_id in ids:
            stored.pop(item_id, None)
    elif kind == "train":
        if len(stored) >= 2 * operation[1]:
            await training.train(ctx, "tests", name, key, TrainParams(n_lists=operation[1]))
    else:
        async with ctx.db.transaction() as conn:
            opened = await open_index(conn, ctx, "tests", name, key)
        async with maintenance_lock(ctx, opened.row.id, wait_s=60):
            if kind == "fold":
                await fold_tail(ctx, opened.cipher, Metric.EUCLIDEAN)
            else:
                await compact_if_needed(ctx, opened.cipher)


async def _check(
    ctx: ServiceContext, name: str, key: bytes, stored: dict[str, np.ndarray]
) -> None:
    if not stored:
        return
    ids = sorted(stored)
    matrix = np.stack([stored[i] for i in ids])
    for query in (np.zeros(DIMENSION, np.float32), matrix[0]):
        hits = (await search.query(ctx, "tests", name, key, QuerySpec(
            vectors=[query.tolist()], top_k=len(ids), n_probes=64,
        )))[0]
        exact = np.argsort(np.linalg.norm(matrix.astype(np.float64) - query, axis=1))
        assert [hit.item.id for hit in hits] == [ids[n] for n in exact]
        for hit in hits:
            assert hit.item.vector is not None
            assert np.array_equal(hit.item.vector, stored[hit.item.id])
    got = await vector_service.get_items(ctx, "tests", name, key, ids)
    assert [item.id for item in got] == ids
    for item in got:
        assert item.vector is not None
        assert np.array_equal(item.vector, stored[item.id])


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(_operation, min_size=1, max_size=14))
def test_a_query_of_every_list_is_exact_after_any_interleaving(
    settings: Settings, operations: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_scenario(settings, operations))
