"""Item use cases: upsert, get, delete, list ids, count."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, cast

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.crypto.aead import AuthenticationFailed
from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import (
    BlockPlan,
    entry_blocks,
    plan_blocks,
    remember_committed,
    seal_planned,
)
from app.engine.cpu import run_cpu
from app.engine.overlap import alongside
from app.engine.payload import (
    ItemPayload,
    decode_payload,
    encode_fields,
    fields_size,
    payload_id,
    with_place,
)
from app.engine.places import BlocksGone, find_vectors
from app.engine.postings import indexed_fields, seal_write_postings
from app.engine.retry import retry_conflicts
from app.engine.tail import tail_bounds
from app.engine.views import cached_view, extend_after_write, forget_view, read_view
from app.errors import (
    CiphervecError,
    IndexNotFound,
    InvalidInput,
    KeySentToKmsIndex,
    StoredDataCorrupt,
    WrongIndexKey,
)
from app.ivf.blocks import TAIL_LIST_NO
from app.ivf.distance import Metric
from app.ivf.kmeans import Lists, nearest_lists
from app.ivf.vectors import Matrix, vector_matrix
from app.services import bounds, maintenance, texts
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex, open_index, open_row
from app.store import blocks as block_repo
from app.store import indexes as index_repo
from app.store import items as item_repo
from app.store import postings as posting_repo
from app.store.blocks import BlockRef, BlockRow, SearchView
from app.store.items import ItemRow
from app.store.postings import PostingChunk
from app.store.small_writes import insert_items_and_blocks


@dataclass(frozen=True, slots=True)
class ItemBatch:
    """Items of one upsert, column-wise; `vectors` not yet checked against the index.

    A None vector is embedded from the item's contents with the index's model.
    """

    ids: Sequence[str]
    vectors: Sequence[Sequence[float] | None] | Matrix
    contents: Sequence[str | None]
    metadata: Sequence[dict[str, Any] | None]
    # Where each item stood in the request, when earlier duplicates were dropped.
    request_positions: Sequence[int] | None = None


def _check_ids(ids: Sequence[str], max_items: int) -> None:
    if not ids:
        raise InvalidInput("No items to upsert")
    if len(ids) > max_items:
        raise InvalidInput(f"Too many items in one request: {len(ids)} > {max_items}")
    if any(not item_id for item_id in ids):
        raise InvalidInput("Item ids must be non-empty strings")


def _last_occurrences(batch: ItemBatch) -> ItemBatch:
    """The batch with each id once, at its last occurrence: within one request a
    later item overwrites an earlier one with the same id, as on the reference."""
    last = {item_id: position for position, item_id in enumerate(batch.ids)}
    if len(last) == len(batch.ids):
        return batch
    keep = sorted(last.values())
    vectors = (
        batch.vectors[keep] if isinstance(batch.vectors, np.ndarray)
        else [batch.vectors[p] for p in keep]
    )
    return ItemBatch(
        ids=[batch.ids[p] for p in keep],
        vectors=vectors,
        contents=[batch.contents[p] for p in keep],
        metadata=[batch.metadata[p] for p in keep],
        request_positions=keep,
    )


def _encode_fields(settings: Settings, batch: ItemBatch) -> list[bytes]:
    try:
        encoded = [
            encode_fields(i, c or None, m or None)
            for i, c, m in zip(batch.ids, batch.contents, batch.metadata, strict=True)
        ]
    except ValueError as exc:
        raise InvalidInput(f"Metadata must be finite JSON values: {exc}") from exc
    positions = batch.request_positions or range(len(encoded))
    for position, fields in zip(positions, encoded, strict=True):
        bounds.check_item_size(settings, position, fields_size(fields))
    return encoded


def open_payload(cipher: IndexCipher, row: ItemRow) -> ItemPayload:
    """Decrypt and parse one stored item."""
    try:
        return decode_payload(cipher.open_item(row.id_token, row.seq, row.payload))
    except AuthenticationFailed as exc:
        raise StoredDataCorrupt("Stored item failed authentication") from exc


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    """What an upsert did, and whether it started a training run."""

    count: int
    training_message: str | None = None
    warning: str | None = None


# Items per statement of an upsert; each is sealed here while PostgreSQL inserts
# the one before (8-9 us an item on each side, measured). The first is small, so
# that the backend starts early; the sizes then double up to the largest, which
# keeps round trips few.
_FIRST_CHUNK = 64
_LARGEST_CHUNK = 256
# The blocks are sealed while the backend inserts the first largest chunk (the
# longest statement so far leaves the most time), and stored after it.
_BLOCKS_AFTER_CHUNKS = 3


def _chunk_starts(n: int) -> list[int]:
    """Where each statement's chunk of an upsert of `n` items starts."""
    starts, start, size = [], 0, _FIRST_CHUNK
    while start < n:
        starts.append(start)
        start += size
        size = min(2 * size, _LARGEST_CHUNK)
    return starts


# A statement of an upsert, ready to send once the one before it is done.
_Statement = Callable[[], Awaitable[None]]

# After an upsert meets a stored item, the index's upserts overwrite from the
# start for this long, instead of paying for a plain insert that rolls back.
_OVERWRITE_MEMORY_S = 60.0


async def upsert(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, batch: ItemBatch
) -> UpsertOutcome:
    """Insert or overwrite items atomically, each vector in its inverted list's blocks.

    Everything happens in one transaction; its statements are pipelined with
    the encryption of the next chunk (see app.engine.overlap). The items are
    first inserted plainly, which costs PostgreSQL less than overwriting; if
    one of them is already stored, the transaction rolls back and runs again,
    overwriting, and so do the index's upserts for a while after. An id given
    twice is stored once, as its last occurrence; the count is of distinct ids.
    """
    _check_ids(batch.ids, ctx.settings.max_batch_items)
    batch = _last_occurrences(batch)
    rows, embedded_with = await _vectors_or_embeddings(ctx, tenant, name, index_key, batch)
    vectors = vector_matrix(rows, 0)
    target = (tenant, name)
    stored = None
    if time.monotonic() - ctx.overwrites.get(target, -math.inf) >= _OVERWRITE_MEMORY_S:
        try:
            stored = await retry_conflicts(partial(
                _store, ctx, target, index_key, batch, vectors, embedded_with, overwrite=False
            ))
        except item_repo.ItemsExist:
            ctx.overwrites[target] = time.monotonic()
    if stored is None:
        stored = await retry_conflicts(partial(
            _store, ctx, target, index_key, batch, vectors, embedded_with, overwrite=True
        ))
    opened, n_items = stored
    after = await maintenance.after_write(ctx, opened, n_items)
    return UpsertOutcome(len(batch.ids), after.training_message, after.warning)


async def _store(
    ctx: ServiceContext,
    target: tuple[str, str],
    index_key: bytes | None,
    batch: ItemBatch,
    vectors: Matrix,
    embedded_with: str | None,
    *,
    overwrite: bool,
) -> tuple[OpenIndex, int]:
    """The upsert's transaction; returns the index as opened and its live item count.

    Without `overwrite`, raises ItemsExist if an item is already stored.
    """
    tenant, name = target
    n = len(batch.ids)
    ahead = await _index_ahead(ctx, tenant, name, index_key)
    async with ctx.db.transaction() as conn:
        reservation, (fields, guessed) = await alongside(
            index_repo.reserve_seqs(
                conn, tenant, name, n, vectors.shape[1], new_items=0 if overwrite else n,
                tail=tail_bounds(ctx.settings),
            ),
            lambda: (_encode_fields(ctx.settings, batch), _lists_ahead(ctx, ahead, vectors)),
        )
        if reservation is None:
            raise IndexNotFound(name)
        opened = await open_row(ctx, reservation.row, index_key)
        if embedded_with is not None and opened.row.embedding_model != embedded_with:
            # Only a delete and re-create under the same name can change the model.
            raise InvalidInput(
                f"Index '{name}' changed its embedding model while items were embedded; retry"
            )
        if opened.row.dimension != vectors.shape[1]:
            raise InvalidInput(
                f"Vector dimension mismatch: expected {opened.row.dimension}, "
                f"got {vectors.shape[1]}"
            )
        index_id, version = opened.row.id, opened.row.active_version
        seqs = np.arange(reservation.first_seq, reservation.first_seq + n, dtype=np.int64)
        if guessed is not None and ahead is not None and ahead.row.active_version == version:
            lists = guessed
        else:
            centroids = await ctx.centroids.load(conn, opened.cipher, version)
            lists = (
                np.zeros(n, dtype=np.int64)
                if centroids is None
                else nearest_lists(vectors, centroids, Metric(opened.row.metric))[:, 0]
            )
        plans = (
            [BlockPlan(reservation.first_seq, TAIL_LIST_NO, np.arange(n))]
            if reservation.to_tail
            else plan_blocks(lists, seqs, ctx.settings.block_max_vectors)
        )
        # An entry's place names its list even in the tail: once a fold has
        # moved it there (app.engine.tail), a read looks in that list.
        block_ids = entry_blocks(plans, n)
        starts = _chunk_starts(n)
        ends = [*starts[1:], n]
        # Inserting, the reservation counted the batch; overwriting, each
        # statement counts the items it adds.
        n_items = opened.row.n_items

        async def overwrite_chunk(
            tokens: list[bytes], chunk_seqs: list[int], payloads: list[bytes]
        ) -> None:
            nonlocal n_items
            n_items = await item_repo.replace_items(conn, index_id, tokens, chunk_seqs, payloads)

        def sealed_items(k: int) -> tuple[list[bytes], list[int], list[bytes]]:
            start, stop = starts[k], ends[k]
            tokens = [opened.cipher.id_token(i) for i in batch.ids[start:stop]]
            chunk_seqs = seqs[start:stop].tolist()
            payloads = opened.cipher.seal_items(tokens, chunk_seqs, [
                with_place(f, version, list_no, block)
                for f, list_no, block in zip(
                    fields[start:stop], lists[start:stop].tolist(),
                    block_ids[start:stop].tolist(), strict=True,
                )
            ])
            return tokens, chunk_seqs, payloads

        def seal_items(k: int) -> _Statement:
            tokens, chunk_seqs, payloads = sealed_items(k)
            if overwrite:
                return partial(overwrite_chunk, tokens, chunk_seqs, payloads)
            return partial(item_repo.insert_items, conn, index_id, tokens, chunk_seqs, payloads)

        blocks: list[BlockRow] = []
        indexed = indexed_fields(opened.row.metadata_schema)

        def sealed_postings() -> list[PostingChunk]:
            return seal_write_postings(opened.cipher, indexed, seqs.tolist(), batch.metadata)

        def seal_postings() -> _Statement:
            return partial(posting_repo.insert_chunks, conn, index_id, sealed_postings())

        def seal_blocks() -> _Statement:
            blocks.extend(seal_planned(opened.cipher, version, plans, seqs, vectors))
            return partial(block_repo.insert_blocks, conn, index_id, blocks)

        if n <= _FIRST_CHUNK and not overwrite:
            # One statement for everything (app.store.small_writes).
            tokens, chunk_seqs, payloads = sealed_items(0)
            blocks.extend(seal_planned(opened.cipher, version, plans, seqs, vectors))
            await insert_items_and_blocks(
                conn, index_id, tokens, chunk_seqs, payloads, blocks, sealed_postings()
            )
        else:
            # Each statement runs while the next one's rows are sealed.
            sealers: list[Callable[[], _Statement]] = [
                partial(seal_items, k) for k in range(len(starts))
            ]
            sealers.insert(min(_BLOCKS_AFTER_CHUNKS, len(sealers)), seal_blocks)
            if any(batch.metadata):
                sealers.append(seal_postings)
            statement = sealers[0]()
            for sealer in sealers[1:]:
                _, statement = await alongside(statement(), sealer)
            await statement()
    remember_committed(ctx.blocks, index_id, blocks)
    extend_after_write(
        ctx, tenant, name, opened.row, reservation.first_seq, reservation.first_seq + n - 1,
        [BlockRef(b.block_id, b.list_tag, b.n_vectors) for b in blocks],
    )
    return opened, n_items


async def _index_ahead(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> OpenIndex | None:
    """The index as this process last saw it, opened, if it was trained: an upsert
    assigns its vectors to lists with those centroids while its first statement
    is in flight, and keeps the result when the statement shows the same version."""
    view = cached_view(ctx, tenant, name)
    if view is None or view.row.active_version == 0:
        return None
    try:
        return await open_row(ctx, view.row, index_key)
    except CiphervecError:
        return None  # the view may predate a key rotation: the upsert finds out itself


def _lists_ahead(ctx: ServiceContext, ahead: OpenIndex | None, vectors: Matrix) -> Lists | None:
    """Each vector's list under `ahead`'s centroids, if their ciphertext is held."""
    if ahead is None or ahead.row.dimension != vectors.shape[1]:
        return None
    centroids = ctx.centroids.held(ahead.cipher, ahead.row.active_version)
    if centroids is None:
        return None
    return nearest_lists(vectors, centroids, Metric(ahead.row.metric))[:, 0]


async def _vectors_or_embeddings(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, batch: ItemBatch
) -> tuple[Sequence[Sequence[float]] | Matrix, str | None]:
    """The batch's vectors, those it lacks embedded from contents in one model call,
    and the model that embedded them (None when every item brought its vector)."""
    if isinstance(batch.vectors, np.ndarray):
        return batch.vectors, None
    given = list(batch.vectors)
    missing = [p for p, vector in enumerate(given) if vector is None]
    if not missing:
        return cast(list[Sequence[float]], given), None
    model = await texts.index_model(ctx, tenant, name, index_key)
    if model is None:
        ids = [batch.ids[p] for p in missing]
        raise InvalidInput(
            f"Items without a vector need an index with an embedding model: {ids[:10]}"
        )
    blank = [batch.ids[p] for p in missing if not texts.has_text(batch.contents[p])]
    if blank:
        raise InvalidInput(
            f"Items need a vector or text contents to embed with '{model}': {blank[:10]}"
        )
    embedded = await texts.embed(ctx, model, [cast(str, batch.contents[p]) for p in missing])
    if len(missing) == len(given):
        return embedded, model
    for row, p in enumerate(missing):
        given[p] = embedded[row]
    return cast(list[Sequence[float]], given), model


# Below these sizes a step runs on the event loop (see app.engine.cpu): about
# 2 us per id token, 3 us plus the bytes per payload decrypted.
_TOKENS_IN_PLACE = 1_000
_PAYLOADS_IN_PLACE = 200


async def id_tokens(cipher: IndexCipher, ids: Sequence[str]) -> list[bytes]:
    """The id tokens of `ids`, off the event loop when there are many."""
    return await run_cpu(
        lambda: [cipher.id_token(i) for i in ids], heavy=len(ids) > _TOKENS_IN_PLACE
    )


async def get_items(
    ctx: ServiceContext,
    tenant: str,
    name: str,
    index_key: bytes | None,
    ids: Sequence[str],
    *,
    include: Collection[str] = ("vector", "contents", "metadata"),
) -> list[ItemPayload]:
    """The stored items among `ids`, in request order; missing ids are left out.

    Without "vector" in `include`, items come without their vectors (not
    looked up); `include` also sizes the answer, refused before any item is
    decrypted when it would be too large (app.services.bounds). With this
    process's cached view of the index (see app.engine.views), one
    statement reads the items and checks the view; otherwise, or when the view
    turns out stale, the view and the items are read in one snapshot.
    """
    bounds.check_id_count(ctx.settings, len(ids))
    unique_ids = list(dict.fromkeys(ids))
    view = cached_view(ctx, tenant, name)
    if view is not None:
        try:
            async with ctx.db.autocommit() as conn:
                found = await _items_on_view(ctx, conn, view, index_key, unique_ids, include)
        except (BlocksGone, WrongIndexKey, KeySentToKmsIndex):
            # A cached view may predate a key rotation or a compaction made elsewhere.
            found = None
        if found is not None:
            return found
        forget_view(ctx, tenant, name)
    async with ctx.db.transaction(snapshot=True) as conn:
        view = await read_view(conn, ctx, tenant, name, base=view)
        found = await _items_on_view(ctx, conn, view, index_key, unique_ids, include)
    if found is None:
        raise AssertionError("a view read in the same snapshot cannot be stale")
    return found


async def _items_on_view(
    ctx: ServiceContext,
    conn: AsyncConnection,
    view: SearchView,
    index_key: bytes | None,
    unique_ids: list[str],
    include: Collection[str],
) -> list[ItemPayload] | None:
    """The stored items among `unique_ids` in their order, or None if `view` no
    longer matches the database."""
    opened = await open_row(ctx, view.row, index_key)
    with_vectors = "vector" in include
    tokens = await id_tokens(opened.cipher, unique_ids)
    lookup = await item_repo.items_by_tokens(
        conn, opened.row.id, tokens, with_map_pages=with_vectors
    )
    if lookup is None or lookup.signature != view.signature:
        return None
    sizes = [len(row.payload) for row in lookup.rows]
    bounds.AnswerBudget(ctx.settings, include, opened.row.dimension).add(sizes, sizes)
    by_token = await run_cpu(
        lambda: {row.id_token: (row.seq, open_payload(opened.cipher, row)) for row in lookup.rows},
        heavy=len(lookup.rows) > _PAYLOADS_IN_PLACE,
    )
    vectors = {}
    if with_vectors:
        vectors = await find_vectors(
            conn, ctx.blocks, opened.cipher, view,
            {seq: p.place for seq, p in by_token.values() if p.place is not None},
            lookup.map_pages,
        )
    found = []
    for item_id, token in zip(unique_ids, tokens, strict=True):
        stored = by_token.get(token)
        if stored is not None:
            seq, payload = stored
            if payload.id != item_id:
                raise StoredDataCorrupt("Stored item does not match its id token")
            if seq in vectors:
                payload = replace(payload, vector=vectors[seq])
            found.append(payload)
    return found


async def delete_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, ids: Sequence[str]
) -> int:
    """Delete items by id; returns how many existed.

    The index row is locked before any item, as an upsert locks it (see
    app.store.indexes), so deletes and upserts of the same ids queue instead
    of deadlocking; the last to commit wins.
    """
    bounds.check_id_count(ctx.settings, len(ids))
    unique_ids = list(dict.fromkeys(ids))

    async def attempt() -> tuple[OpenIndex, item_repo.Deletion]:
        async with ctx.db.transaction() as conn:
            row = await index_repo.find_index_for_write(conn, tenant, name)
            if row is None:
                raise IndexNotFound(name)
            opened = await open_row(ctx, row, index_key)
            tokens = await id_tokens(opened.cipher, unique_ids)
            return opened, await item_repo.delete_items(conn, row.id, tokens)

    opened, deletion = await retry_conflicts(attempt)
    await maintenance.after_write(ctx, opened, deletion.n_items)
    return deletion.deleted


async def list_ids(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> list[str]:
    """Every live item id, decrypted page by page off the event loop; refused
    once the ids alone outgrow the answer limit."""
    ids: list[str] = []
    size = 0
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        async for page in item_repo.stream_items(conn, opened.row.id):
            found = await run_cpu(
                partial(_open_ids, opened.cipher, page), heavy=len(page) > _PAYLOADS_IN_PLACE
            )
            # Each id is a JSON string and a comma: its length plus 3 at least.
            size += sum(len(i) + 3 for i in found)
            if size > ctx.settings.max_response_bytes:
                raise bounds.answer_too_large(ctx.settings, size)
            ids.extend(found)
    return ids


def _open_ids(cipher: IndexCipher, rows: Sequence[ItemRow]) -> list[str]:
    try:
        return [payload_id(cipher.open_item(row.id_token, row.seq, row.payload)) for row in rows]
    except AuthenticationFailed as exc:
        raise StoredDataCorrupt("Stored item failed authentication") from exc


async def count_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> int:
    """Number of live items."""
    async with ctx.db.transaction() as conn:
        return (await open_index(conn, ctx, tenant, name, index_key)).row.n_items
