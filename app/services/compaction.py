"""Compaction: rewrite a version's blocks without stale entries and without small fragments.

Entries go stale when their item is overwritten or deleted; small blocks pile
up when upserts touch many lists with few vectors each. A list is rewritten
in one transaction: its live entries are packed into full blocks with fresh
ids and the old blocks are deleted, so a reader sees either the old blocks or
the new ones. The caller holds the index's maintenance lock, so compaction
never races a training run.
"""

from __future__ import annotations

import asyncio
import itertools

import numpy as np

from app.crypto.index_cipher import IndexCipher
from app.services.blockstore import open_blocks, remember_committed, seal_list
from app.services.context import ServiceContext
from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store import items as item_repo


async def compact_if_needed(ctx: ServiceContext, cipher: IndexCipher) -> int:
    """Rewrite the lists that need it; returns how many were rewritten."""
    index_id = cipher.index_id
    block_size = ctx.settings.block_max_vectors
    async with ctx.db.transaction() as conn:
        state = await index_repo.lock_index(conn, index_id)
        if state is None:
            return 0
        version = state.active_version
        stats = await block_repo.version_stats(conn, index_id, version)
        stale = stats.entries - state.n_items
        limit = ctx.settings.compaction_stale_ratio * stats.entries
        everything = stats.entries > 0 and stale > limit
        tags = await block_repo.list_tags(
            conn, index_id, version, fragmented_by=None if everything else block_size
        )
    for tag in tags:
        await _compact_list(ctx, cipher, version, tag)
    return len(tags)


async def _compact_list(
    ctx: ServiceContext, cipher: IndexCipher, version: int, list_tag: bytes
) -> None:
    index_id = cipher.index_id
    async with ctx.db.transaction() as conn:
        old = await block_repo.blocks_of_list(conn, index_id, version, list_tag)
        if not old:
            return
        seqs, vectors = await asyncio.to_thread(open_blocks, cipher, old)
        live = await item_repo.live_among(conn, index_id, seqs.tolist())
        keep = np.fromiter((int(s) in live for s in seqs), dtype=bool, count=len(seqs))
        seqs, vectors = seqs[keep], vectors[keep]
        block_size = ctx.settings.block_max_vectors
        n_blocks = -(-len(seqs) // block_size)
        # The index row's lock, before any block is written (app.store.indexes).
        first = await index_repo.reserve_ids(conn, index_id, n_blocks)
        if first is None:
            return  # the index was deleted meanwhile
        fresh = seal_list(
            cipher, version, list_tag, seqs, vectors, block_size, itertools.count(first)
        )
        await block_repo.insert_blocks(conn, index_id, fresh)
        await block_repo.delete_blocks(conn, index_id, [b.block_id for b in old])
    remember_committed(ctx.blocks, index_id, fresh)
