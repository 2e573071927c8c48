"""IVF training: build a new index version from the live vectors and switch to it atomically.

1. Snapshot: lock the index row (waiting for in-flight upserts), note the
   next write sequence S and the live sequences; commit.
2. Passes: read the active version's blocks with ids <= S from PostgreSQL
   in pages, decrypt, drop stale entries, and feed MiniBatchKMeans random
   mini-batches of `batch_size` until the centroids settle or `max_iters`
   passes (see app.ivf.kmeans). When the vectors fit `max_memory`, they are
   read and decrypted once and held for every pass; otherwise each pass
   streams them again through a shuffle buffer (for the dot product, after
   a pass that finds the largest norm). A retrain into as many lists starts
   from the active version's centroids.
3. Assign: write every live vector into the new version's blocks (invisible,
   since the version is not active yet), and the list each went into in the
   version's list map (see app.engine.places).
4. Catch up: vectors upserted meanwhile sit in blocks with ids > S; assign
   them too, first without blocking writers, then
5. Switch: in one transaction holding the index row lock, assign the last
   late blocks, store the encrypted centroids and make the new version
   active. A query sees the old version or the new one, never a mix, and no
   upsert before, during or after the run is lost.
6. Drop the old version's blocks.

The whole run holds the index's advisory lock, so one process trains an
index at a time; an interrupted run leaves the old version active and its
leftovers are removed by the next run. Every transaction that writes locks
the index row first (see app.store.indexes): once the index is deleted, the
run's next write finds no index and the run ends with IndexNotFound, leaving
nothing of the index behind.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import (
    block_count,
    open_blocks,
    open_blocks_off_loop,
    remember_committed,
    seal_assigned,
    seal_centroids,
)
from app.engine.locking import maintenance_lock
from app.engine.places import seal_list_map
from app.errors import Conflict, IndexNotFound, InvalidInput
from app.ivf.blocks import Seqs
from app.ivf.distance import Metric
from app.ivf.kmeans import (
    StreamingKMeans,
    auto_n_lists,
    largest_norm,
    nearest_lists,
    sample_size,
)
from app.ivf.probes import measured_n_probes
from app.ivf.vectors import Matrix
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.store import blocks as block_repo
from app.store import centroids as centroid_repo
from app.store import indexes as index_repo
from app.store import items as item_repo
from app.store import list_maps as list_map_repo
from app.store import locks
from app.store.indexes import IndexRow

MB = 1024 * 1024
WRITE_CHUNK = 65_536
# Blocks read per page: enough for few round trips, few enough that a page stays small.
PAGE_BLOCKS = 64
# Vectors sampled while a run writes its lists, to measure the probes a query
# needs (app.ivf.probes): 12,000 of 384 dimensions took 0.35 s.
PROBE_SAMPLE = 12_000
PROBE_SAMPLE_BYTES = 32 * MB


@dataclass(frozen=True, slots=True)
class TrainParams:
    """Training knobs, as /v1/indexes/train names them."""

    n_lists: int | None = None
    batch_size: int = 2048
    max_iters: int = 100
    tolerance: float = 1e-6
    max_memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a run produced."""

    version: int
    n_lists: int
    n_vectors: int
    passes: int


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """How a run spends its memory budget.

    With `hold`, the live vectors are read and decrypted once and every pass
    runs over them in memory; otherwise each pass streams them from the
    database again, through a shuffle buffer of `buffer_vectors`.
    """

    hold: bool
    page_blocks: int
    buffer_vectors: int = 0


def plan_memory(
    n_vectors: int, dimension: int, n_lists: int, block_size: int, params: TrainParams
) -> MemoryPlan:
    """Hold the vectors when they fit `max_memory` (0: no limit), else stream them; 422
    when even one page and one mini-batch do not fit."""
    if not params.max_memory_mb:
        return MemoryPlan(hold=True, page_blocks=PAGE_BLOCKS)
    budget = params.max_memory_mb * MB
    vector_bytes = dimension * 4
    # 8 bytes a vector for the live sequences, 32 for the list map's (sequence,
    # list) pairs as collected, then joined and sorted, 16 for the assignment's
    # lists and their order; the centroids (three copies at a pass's end) and
    # the inertia sample.
    fixed = 56 * n_vectors + (3 * n_lists + sample_size(n_lists)) * vector_bytes
    # A page as ciphertext, plaintext and vectors; a mini-batch and its prepared copy.
    page_bytes = min(block_size, n_vectors) * vector_bytes * 3
    batch_bytes = min(params.batch_size, n_vectors) * vector_bytes * 2
    held_bytes = n_vectors * (vector_bytes + 8)
    spare = budget - fixed - batch_bytes
    if held_bytes + page_bytes <= spare:
        pages = (spare - held_bytes) // page_bytes
        return MemoryPlan(hold=True, page_blocks=min(PAGE_BLOCKS, pages))
    # Streaming needs a page and a shuffle buffer of at least one mini-batch.
    if page_bytes + batch_bytes > spare:
        needed = fixed + 2 * batch_bytes + page_bytes
        raise InvalidInput(
            f"max_memory of {params.max_memory_mb} MB is too small to train this index; "
            f"it needs at least {needed // MB + 1} MB"
        )
    # Half of what the first mini-batch leaves for pages, the rest for the
    # shuffle buffer (and its shuffled copy).
    pages = max(1, min(PAGE_BLOCKS, (spare - batch_bytes) // 2 // page_bytes))
    buffer_vectors = (spare - pages * page_bytes) // (2 * vector_bytes)
    return MemoryPlan(hold=False, page_blocks=pages, buffer_vectors=min(n_vectors, buffer_vectors))


async def train(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, params: TrainParams
) -> TrainResult:
    """Train the index now, after any training or compaction already running on it.

    Waits for that job at most `train_wait_s` (409 then); an index deleted
    meanwhile is a 404. When that job was a training run that covered every
    item this request found, into the lists it asks for, its result stands.
    """
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
    wait_s = ctx.settings.train_wait_s
    async with maintenance_lock(ctx, opened.row.id, wait_s=wait_s) as held:
        if held:
            done = await _trained_while_waiting(ctx, opened.row, params)
            if done is not None:
                return done
            with ctx.metrics.training_run("explicit"):
                return await run_locked(ctx, opened.cipher, opened.row, params)
    async with ctx.db.transaction() as conn:
        if not await index_repo.index_exists(conn, opened.row.id):
            raise IndexNotFound(name)
    raise Conflict(
        f"Index '{name}' is still being trained or compacted after {wait_s:g} s; "
        "try again later"
    )


async def _trained_while_waiting(
    ctx: ServiceContext, before: IndexRow, params: TrainParams
) -> TrainResult | None:
    """What the run this request waited for produced, when it already trained every
    item the request found (an explicit train arriving during an automatic one)
    into the lists asked for: training again would redo the same work."""
    async with ctx.db.transaction() as conn:
        now = await index_repo.find_index(conn, before.tenant, before.name)
    if (now is None or now.id != before.id or now.active_version == before.active_version
            or now.trained_vectors < before.n_items
            or params.n_lists not in (None, now.n_lists)):
        return None
    return TrainResult(now.active_version, now.n_lists, now.trained_vectors, passes=0)


@dataclass(slots=True)
class _Run:
    ctx: ServiceContext
    cipher: IndexCipher
    row: IndexRow
    metric: Metric
    page_blocks: int
    # Share of the written entries kept as the sample that measures auto n_probes.
    sample_share: float = 0.0
    placed: list[tuple[Seqs, np.ndarray]] = field(default_factory=list)
    sample: list[Matrix] = field(default_factory=list)
    _sampler: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    async def pages(
        self, version: int, after: int, up_to: int | None, live: Seqs | None
    ) -> AsyncIterator[tuple[Seqs, Matrix]]:
        """Entries of a version's blocks with ids in (after, up_to], a page at a time.

        With `live`, entries whose sequence is not in it (overwritten or deleted) are dropped.
        """
        cursor = after
        while True:
            async with self.ctx.db.transaction() as conn:
                page = await block_repo.page_of_blocks(
                    conn, self.row.id, version, after_block_id=cursor, up_to_block_id=up_to,
                    limit=self.page_blocks,
                )
            if not page:
                return
            cursor = page[-1].block_id
            seqs, vectors = await asyncio.to_thread(open_blocks, self.cipher, page)
            if live is None:
                yield seqs, vectors
            else:
                keep = _is_live(live, seqs)
                yield seqs[keep], vectors[keep]

    async def hold(
        self, version: int, up_to: int, live: Seqs, dimension: int
    ) -> tuple[Seqs, Matrix]:
        """Every live entry of a version's blocks with ids <= up_to, read and decrypted once.

        Filled in place: concatenating pages would hold them twice at the end.
        """
        seqs = np.empty(len(live), dtype=np.int64)
        vectors = np.empty((len(live), dimension), dtype=np.float32)
        filled = 0
        async for page_seqs, page_vectors in self.pages(version, 0, up_to, live):
            if filled + len(page_seqs) > len(live):
                raise RuntimeError(f"index {self.row.id}: more live entries than live items")
            seqs[filled : filled + len(page_seqs)] = page_seqs
            vectors[filled : filled + len(page_seqs)] = page_vectors
            filled += len(page_seqs)
        return seqs[:filled], vectors[:filled]

    async def write(self, version: int, seqs: Seqs, vectors: Matrix, centroids: Matrix) -> None:
        """Assign entries to the new centroids and store them as blocks of `version`,
        whole lists at a time, about WRITE_CHUNK entries per transaction."""
        if not len(seqs):
            return
        lists = await asyncio.to_thread(_assign, vectors, centroids, self.metric)
        self.placed.append((seqs, lists))
        self.sample.append(vectors[self._sampler.random(len(vectors)) < self.sample_share])
        block_size = self.ctx.settings.block_max_vectors
        order = np.argsort(lists, kind="stable")
        list_ends = np.flatnonzero(np.diff(lists[order])) + 1
        cuts = [0, *_chunk_cuts(list_ends, WRITE_CHUNK), len(order)]
        for start, stop in itertools.pairwise(cuts):
            part = order[start:stop]
            if not len(part):
                continue
            async with self.ctx.db.transaction() as conn:
                first = await _reserve_ids(conn, self.row, block_count(lists[part], block_size))
                blocks = await asyncio.to_thread(
                    seal_assigned, self.cipher, version, lists[part], seqs[part], vectors[part],
                    block_size, itertools.count(first),
                )
                await block_repo.insert_blocks(conn, self.row.id, blocks)
            remember_committed(self.ctx.blocks, self.row.id, blocks)


async def _reserve_ids(conn: AsyncConnection, row: IndexRow, count: int) -> int:
    first = await index_repo.reserve_ids(conn, row.id, count)
    if first is None:
        raise IndexNotFound(row.name)
    return first


async def _vectors_vanished(ctx: ServiceContext, row: IndexRow) -> NoReturn:
    """End a run whose first pass read fewer vectors than the live count promised.

    Blocks are removed only by compaction, which waits for this run's lock, and
    by deleting the index: that is the expected cause.
    """
    async with ctx.db.transaction() as conn:
        exists = await index_repo.index_exists(conn, row.id)
    if not exists:
        raise IndexNotFound(row.name)
    raise RuntimeError(f"index {row.id}: live vectors missing from its blocks during training")


def _is_live(live: Seqs, seqs: Seqs) -> np.ndarray:
    position = np.searchsorted(live, seqs)
    inside = position < len(live)
    return inside & (live[np.minimum(position, len(live) - 1)] == seqs) if len(live) else inside


def _assign(vectors: Matrix, centroids: Matrix, metric: Metric) -> np.ndarray:
    return nearest_lists(vectors, centroids, metric)[:, 0]


def _chunk_cuts(list_ends: np.ndarray, size: int) -> list[int]:
    """Positions among list boundaries that split the sorted entries about every `size`."""
    cuts, last = [], 0
    for end in list_ends.tolist():
        if end - last >= size:
            cuts.append(end)
            last = end
    return cuts


async def run_locked(
    ctx: ServiceContext, cipher: IndexCipher, row: IndexRow, params: TrainParams
) -> TrainResult:
    """One training run; the caller holds the index's maintenance lock."""
    async with ctx.db.transaction() as conn:
        snapshot = await index_repo.lock_index(conn, row.id)
        if snapshot is None:
            raise IndexNotFound(row.name)
        live_packed = await item_repo.live_seqs_packed(conn, row.id)
    live = np.frombuffer(live_packed, dtype=">i8").astype(np.int64)
    n_vectors = len(live)
    n_lists = params.n_lists or auto_n_lists(n_vectors)
    if n_vectors < 2 * n_lists:
        raise InvalidInput(
            f"Training {n_lists} lists needs at least {2 * n_lists} vectors; "
            f"the index has {n_vectors}"
        )
    dimension = snapshot.dimension
    block_size = ctx.settings.block_max_vectors
    plan = plan_memory(n_vectors, dimension, n_lists, block_size, params)
    old, new = snapshot.active_version, snapshot.active_version + 1
    run = _Run(
        ctx, cipher, row, Metric(row.metric), plan.page_blocks,
        sample_share=min(1.0, min(PROBE_SAMPLE, PROBE_SAMPLE_BYTES // (4 * dimension)) / n_vectors),
    )
    async with ctx.db.transaction() as conn:
        await block_repo.delete_version(conn, row.id, new)
        await list_map_repo.delete_version(conn, row.id, new)
        previous = await ctx.centroids.load(conn, cipher, old)

    if plan.hold:
        seqs, vectors = await run.hold(old, snapshot.next_seq, live, dimension)
    max_norm = 0.0
    if run.metric is Metric.DOTPRODUCT:
        # The lift (see app.ivf.kmeans) needs the largest norm before k-means
        # sees its first vector: streamed, that takes a pass of its own.
        if plan.hold:
            max_norm = await asyncio.to_thread(largest_norm, vectors)
        else:
            async for _, page in run.pages(old, 0, snapshot.next_seq, live):
                max_norm = max(max_norm, largest_norm(page))
    kmeans = StreamingKMeans(
        n_lists, run.metric, batch_size=params.batch_size, tolerance=params.tolerance,
        buffer_vectors=plan.buffer_vectors, max_norm=max_norm,
        # A retrain into as many lists starts from the active version's centroids:
        # unless the data changed much since, a pass or two settles them, where
        # k-means++ would start over.
        init=previous if previous is not None and len(previous) == n_lists else None,
    )
    passes = 0
    for passes in range(1, params.max_iters + 1):
        if plan.hold:
            await asyncio.to_thread(kmeans.feed_held, vectors)
        else:
            async for _, page in run.pages(old, 0, snapshot.next_seq, live):
                await asyncio.to_thread(kmeans.feed, page)
        if passes == 1 and kmeans.n_seen < 2 * n_lists:
            await _vectors_vanished(ctx, row)
        if await asyncio.to_thread(kmeans.end_pass):
            break
    centroids = kmeans.centroids

    if plan.hold:
        await run.write(new, seqs, vectors, centroids)
        del seqs, vectors
    else:
        async for seqs, vectors in run.pages(old, 0, snapshot.next_seq, live):
            await run.write(new, seqs, vectors, centroids)

    sample = np.concatenate(run.sample) if run.sample else np.zeros((0, dimension), np.float32)
    n_probes = await asyncio.to_thread(
        measured_n_probes, sample, centroids, run.metric, n_vectors
    )
    del sample
    run.sample.clear()

    cursor = snapshot.next_seq
    while True:  # catch up with upserts made during the run, without blocking writers
        async with ctx.db.transaction() as conn:
            bound = await index_repo.lock_index(conn, row.id)
        if bound is None:
            raise IndexNotFound(row.name)
        if bound.next_seq - cursor < block_size:
            break
        async for seqs, vectors in run.pages(old, cursor, bound.next_seq, None):
            await run.write(new, seqs, vectors, centroids)
        cursor = bound.next_seq

    async with ctx.db.transaction() as conn:
        if not await index_repo.keep_index(conn, row.id):
            raise IndexNotFound(row.name)
        await _store_list_map(conn, cipher, row.id, new, run.placed)
    async with ctx.db.transaction() as conn:
        final = await index_repo.lock_index(conn, row.id)
        if final is None:
            raise IndexNotFound(row.name)
        late = await block_repo.page_of_blocks(
            conn, row.id, old, after_block_id=cursor, limit=1_000_000
        )
        late_seqs, late_vectors = await open_blocks_off_loop(cipher, late)
        late_blocks = []
        if len(late_seqs):
            lists = _assign(late_vectors, centroids, run.metric)
            first = await _reserve_ids(conn, row, block_count(lists, block_size))
            late_blocks = seal_assigned(
                cipher, new, lists, late_seqs, late_vectors, block_size,
                block_ids=itertools.count(first),
            )
            await block_repo.insert_blocks(conn, row.id, late_blocks)
            await _store_list_map(conn, cipher, row.id, new, [(late_seqs, lists)])
        await centroid_repo.insert_centroids(
            conn, row.id, new, n_lists, seal_centroids(cipher, new, centroids)
        )
        await index_repo.activate_version(
            conn, row.id, new, n_lists, final.n_items, auto_n_probes=n_probes
        )
    remember_committed(ctx.blocks, row.id, late_blocks)

    async with ctx.db.transaction() as conn:
        await block_repo.delete_other_versions(conn, row.id, new)
        await centroid_repo.delete_other_versions(conn, row.id, new)
        await list_map_repo.delete_other_versions(conn, row.id, new)
    return TrainResult(version=new, n_lists=n_lists, n_vectors=n_vectors, passes=passes)


async def _store_list_map(
    conn: AsyncConnection, cipher: IndexCipher, index_id: int, version: int,
    placed: list[tuple[Seqs, np.ndarray]],
) -> None:
    if placed:
        seqs = np.concatenate([s for s, _ in placed])
        lists = np.concatenate([lists for _, lists in placed])
        pages = await asyncio.to_thread(seal_list_map, cipher, version, seqs, lists)
        await list_map_repo.insert_pages(conn, index_id, version, pages)


async def training_now(ctx: ServiceContext, tenant: str) -> list[str]:
    """Names of the tenant's indexes whose maintenance lock is held (training or compacting)."""
    async with ctx.db.transaction() as conn:
        return await index_repo.names_of(conn, tenant, await locks.locked_index_ids(conn))
