"""Compaction: rewrite a version's blocks without stale entries and without small fragments.

Entries go stale when their item is overwritten or deleted; small blocks pile
up when upserts touch lists with few vectors each. Two rules, each bounding
the work per entry written or made stale:

- Stale entries beyond `compaction_stale_ratio` of all entries: every list is
  rewritten whole. The stale writes that crossed the ratio pay for it.
- Size tiers: blocks short of `block_max_vectors` are grouped per list by size
  class, floor(log4(entries)). Once a (list, class) pair holds `TIER_FANOUT`
  blocks, exactly those are merged into blocks of at most `block_max_vectors`:
  full ones, and one with the rest, mostly of a higher class. Full blocks are
  never rewritten, so an entry is rewritten about once per class (log4 of the
  block size, ~5 times), not once per few writes into its list as a whole-list
  rewrite did.

Neither rule touches the write tail: a separate job folds it into the lists.

A rewrite is one transaction: the live entries of the blocks it reads are
packed into blocks with fresh ids and the old blocks are deleted, so a reader
sees either the old blocks or the new ones. The caller holds the index's
maintenance lock, so compaction never races a training run or another
compaction.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Awaitable, Callable
from functools import partial

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import (
    block_count,
    open_blocks,
    plan_blocks,
    remember_committed,
    seal_tagged,
)
from app.engine.context import EngineContext
from app.ivf.blocks import TAIL_LIST_NO
from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store import items as item_repo
from app.store.blocks import BlockRow

# Blocks of one list and one size class that are merged together.
TIER_FANOUT = 4


class _Outcome(enum.Enum):
    REWRITTEN = enum.auto()
    NOTHING_LEFT = enum.auto()  # the blocks were gone when read
    INDEX_GONE = enum.auto()


async def compact_if_needed(ctx: EngineContext, cipher: IndexCipher) -> int:
    """Rewrite what needs it; returns how many rewrites were committed (whole lists
    for stale entries, or batches of (list, size class) merges)."""
    index_id = cipher.index_id
    async with ctx.db.transaction() as conn:
        # The lock waits for in-flight upserts, so items and entries are counted
        # at one point of the write sequence.
        state = await index_repo.lock_index(conn, index_id)
        if state is None:
            return 0
        version = state.active_version
        tail = cipher.list_tag(version, TAIL_LIST_NO)
        stats = await block_repo.version_stats(conn, index_id, version)
        stale = stats.entries - state.n_items
        limit = ctx.settings.compaction_stale_ratio * stats.entries
        # Stale tail entries are dropped by the fold, not by rewriting the lists:
        # while the tail holds blocks, the stale rule waits for it.
        tags = (
            await block_repo.list_tags(conn, index_id, version, excluding=tail)
            if stats.entries > 0 and stale > limit and state.tail_blocks == 0
            else None
        )
    if tags is None:
        return await _merge_tiers(ctx, cipher, version, tail)
    rewritten = 0
    for tag in tags:
        outcome = await _rewrite(
            ctx, cipher, version,
            partial(block_repo.blocks_of_list, index_id=index_id, version=version, list_tag=tag),
        )
        if outcome is _Outcome.INDEX_GONE:
            break
        if outcome is _Outcome.REWRITTEN:
            rewritten += 1
    return rewritten


def _size_classes(block_size: int) -> int:
    """How many size classes blocks short of `block_size` entries fall into."""
    return ((block_size - 1).bit_length() + 1) // 2


# Tier merges are written this many blocks read at a time, each batch in one
# transaction: one statement of each kind for many lists (a fold touches
# hundreds of lists with an entry or two each, and a transaction per list made
# the merges cost more than the writes they followed), while the index row is
# held for a bounded time.
_MERGE_BATCH_BLOCKS = 4_096


async def _merge_tiers(
    ctx: EngineContext, cipher: IndexCipher, version: int, tail: bytes
) -> int:
    index_id = cipher.index_id
    block_size = ctx.settings.block_max_vectors
    merged = 0
    # A merge's small block mostly lands in a higher class, which may then hold
    # TIER_FANOUT blocks in turn: each round merges what the previous one piled
    # up, so a pass leaves fewer than TIER_FANOUT small blocks per list and
    # class. A round per class is enough when every merge moves its entries up;
    # the cap keeps a steady stream of writes from holding the maintenance lock
    # here for ever. What is left (a merge whose stale entries were dropped, or
    # whose remainder after full blocks is smaller) waits for the next check.
    for _ in range(_size_classes(block_size) + 1):
        async with ctx.db.transaction() as conn:
            tiers = await block_repo.tiers_to_merge(
                conn, index_id, version,
                block_size=block_size, fanout=TIER_FANOUT, excluding=tail,
            )
        if not tiers:
            break
        batch: list[int] = []
        for n, tier in enumerate(tiers):
            batch.extend(tier.block_ids)
            if len(batch) < _MERGE_BATCH_BLOCKS and n + 1 < len(tiers):
                continue
            outcome = await _rewrite(
                ctx, cipher, version,
                partial(block_repo.blocks_by_id, index_id=index_id, block_ids=batch),
            )
            if outcome is _Outcome.INDEX_GONE:
                return merged
            if outcome is _Outcome.REWRITTEN:
                merged += 1
            batch = []
    return merged


async def _rewrite(
    ctx: EngineContext, cipher: IndexCipher, version: int,
    read: Callable[[AsyncConnection], Awaitable[list[BlockRow]]],
) -> _Outcome:
    """Replace the blocks that `read` returns by blocks of their live entries, each
    list's entries packed together, in one transaction."""
    index_id = cipher.index_id
    block_size = ctx.settings.block_max_vectors
    async with ctx.db.transaction() as conn:
        old = await read(conn)
        if not old:
            return _Outcome.NOTHING_LEFT
        seqs, vectors = await asyncio.to_thread(open_blocks, cipher, old)
        tags = sorted({block.list_tag for block in old})
        list_of_block = {tag: n for n, tag in enumerate(tags)}
        lists = np.repeat(
            np.fromiter((list_of_block[b.list_tag] for b in old), dtype=np.int64, count=len(old)),
            [block.n_vectors for block in old],
        )
        live = await item_repo.live_among(conn, index_id, seqs.tolist())
        keep = np.isin(seqs, np.fromiter(live, dtype=np.int64, count=len(live)))
        seqs, vectors, lists = seqs[keep], vectors[keep], lists[keep]
        n_blocks = block_count(lists, block_size)
        # The index row's lock, before any block is written (app.store.indexes).
        first = await index_repo.reserve_ids(conn, index_id, n_blocks)
        if first is None:
            return _Outcome.INDEX_GONE
        plans = plan_blocks(lists, seqs, block_size, itertools.count(first))
        fresh = await asyncio.to_thread(
            seal_tagged, cipher, version, plans, [tags[p.list_no] for p in plans], seqs, vectors
        )
        await block_repo.insert_blocks(conn, index_id, fresh)
        await block_repo.delete_blocks(conn, index_id, [b.block_id for b in old])
    remember_committed(ctx.blocks, index_id, fresh)
    return _Outcome.REWRITTEN
