"""The write tail of a trained index: where small writes go, and the fold that empties it.

Written straight into the lists, an upsert of k items into a trained index
makes up to k one-entry blocks, one per list it touches, and every query that
probes those lists opens them. Into the tail, the same upsert is one block.
Every query scans the whole tail, so it is bounded (`tail_max_entries`,
`tail_max_blocks`, enforced by the statement that reserves the write's
sequences); past `tail_fold_entries` or `tail_fold_blocks` a background fold
moves its live entries into their lists, a few entries per list, where the
tiered merges of app.engine.compaction gather them into full blocks. An
entry is thus rewritten once by the fold and at most once per size class by
the merges: a small write costs what it writes.

A tail entry's item payload already names the list it belongs to (the upsert
computes it), so a read of its vector looks there once the fold has run.
"""

from __future__ import annotations

import itertools

import numpy as np

from app.config import Settings
from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import (
    block_count,
    open_blocks_off_loop,
    plan_blocks,
    remember_committed,
    seal_planned,
)
from app.engine.context import EngineContext
from app.engine.cpu import run_cpu
from app.ivf.blocks import TAIL_LIST_NO
from app.ivf.distance import Metric
from app.ivf.kmeans import nearest_lists
from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store import items as item_repo
from app.store.blocks import BlockRow
from app.store.indexes import IndexRow, TailBounds

# Entries whose list assignment and sealing run in place rather than on a worker
# thread (see app.engine.cpu).
_FOLD_IN_PLACE = 256


def tail_bounds(settings: Settings) -> TailBounds:
    """Which writes the settings let into the tail."""
    return TailBounds(
        write_items=min(settings.tail_write_max_items, settings.block_max_vectors),
        blocks=settings.tail_max_blocks,
        entries=settings.tail_max_entries,
    )


def tail_due(settings: Settings, row: IndexRow) -> bool:
    """Whether the index's tail has grown enough to be folded."""
    return row.tail_blocks >= settings.tail_fold_blocks or (
        row.tail_entries >= settings.tail_fold_entries
    )


async def fold_tail(ctx: EngineContext, cipher: IndexCipher, metric: Metric) -> int:
    """Move the live entries of the active version's tail into their lists, in one
    transaction holding the index row (writers wait for it, a few milliseconds);
    returns how many entries moved. The caller holds the maintenance lock."""
    index_id = cipher.index_id
    block_size = ctx.settings.block_max_vectors
    async with ctx.db.transaction() as conn:
        state = await index_repo.lock_index(conn, index_id)
        if state is None or state.active_version == 0 or state.tail_blocks == 0:
            return 0
        version = state.active_version
        tail = await block_repo.blocks_of_list(
            conn, index_id, version, cipher.list_tag(version, TAIL_LIST_NO)
        )
        seqs, vectors = await open_blocks_off_loop(cipher, tail)
        live = await item_repo.live_among(conn, index_id, seqs.tolist())
        keep = np.isin(seqs, np.fromiter(live, dtype=np.int64, count=len(live)))
        seqs, vectors = seqs[keep], vectors[keep]
        centroids = await ctx.centroids.load(conn, cipher, version)
        if centroids is None:  # only version 0 has none, and it has no tail
            return 0
        folded: list[BlockRow] = []
        if len(seqs):
            lists = await run_cpu(
                lambda: nearest_lists(vectors, centroids, metric)[:, 0],
                heavy=len(seqs) > _FOLD_IN_PLACE,
            )
            n_blocks = block_count(lists, block_size)
            first = await index_repo.reserve_ids(conn, index_id, n_blocks)
            if first is None:
                return 0
            plans = plan_blocks(lists, seqs, block_size, itertools.count(first))
            folded = await run_cpu(
                lambda: seal_planned(cipher, version, plans, seqs, vectors),
                heavy=len(seqs) > _FOLD_IN_PLACE,
            )
            await block_repo.insert_blocks(conn, index_id, folded)
        elif await index_repo.reserve_ids(conn, index_id, 0) is None:
            return 0
        await block_repo.delete_blocks(conn, index_id, [b.block_id for b in tail])
        await index_repo.empty_tail(conn, index_id)
    remember_committed(ctx.blocks, index_id, folded)
    return len(seqs)
