"""Item use cases: upsert, get, delete, list ids, count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.crypto.aead import AuthenticationFailed
from app.crypto.index_cipher import IndexCipher
from app.errors import IndexNotFound, InvalidInput, StoredDataCorrupt
from app.ivf.distance import Metric
from app.ivf.kmeans import nearest_lists
from app.ivf.vectors import Matrix, vector_matrix
from app.services import maintenance
from app.services.blockstore import seal_assigned
from app.services.context import ServiceContext
from app.services.indexes import open_index, open_row
from app.services.payload import ItemPayload, decode_payload, encode_payload
from app.store import indexes as index_repo
from app.store import items as item_repo
from app.store.items import ItemRow


@dataclass(frozen=True, slots=True)
class ItemBatch:
    """Items of one upsert, column-wise; `vectors` not yet checked against the index."""

    ids: Sequence[str]
    vectors: Sequence[Sequence[float]] | Matrix
    contents: Sequence[str | None]
    metadata: Sequence[dict[str, Any] | None]


def _check_ids(ids: Sequence[str], max_items: int) -> None:
    if not ids:
        raise InvalidInput("No items to upsert")
    if len(ids) > max_items:
        raise InvalidInput(f"Too many items in one request: {len(ids)} > {max_items}")
    if any(not item_id for item_id in ids):
        raise InvalidInput("Item ids must be non-empty strings")
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise InvalidInput(f"Duplicate ids in one request: {dupes[:10]}")


def _encode_all(batch: ItemBatch, vectors: Matrix) -> list[bytes]:
    try:
        return [
            encode_payload(ItemPayload(id=i, vector=v, contents=c or None, metadata=m or None))
            for i, v, c, m in zip(batch.ids, vectors, batch.contents, batch.metadata, strict=True)
        ]
    except ValueError as exc:
        raise InvalidInput(f"Metadata must be finite JSON values: {exc}") from exc


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


async def upsert(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, batch: ItemBatch
) -> UpsertOutcome:
    """Insert or overwrite items atomically, each vector in its inverted list's blocks."""
    _check_ids(batch.ids, ctx.settings.max_batch_items)
    vectors = vector_matrix(batch.vectors, 0)
    plaintexts = _encode_all(batch, vectors)
    async with ctx.db.transaction() as conn:
        reservation = await index_repo.reserve_seqs(
            conn, tenant, name, len(batch.ids), vectors.shape[1]
        )
        if reservation is None:
            raise IndexNotFound(name)
        opened = await open_row(ctx, reservation.row, index_key)
        if opened.row.dimension != vectors.shape[1]:
            raise InvalidInput(
                f"Vector dimension mismatch: expected {opened.row.dimension}, "
                f"got {vectors.shape[1]}"
            )
        tokens = [opened.cipher.id_token(i) for i in batch.ids]
        version = opened.row.active_version
        centroids = await ctx.centroids.load(conn, opened.cipher, version)
        lists = (
            np.zeros(len(tokens), dtype=np.int64)
            if centroids is None
            else nearest_lists(vectors, centroids, Metric(opened.row.metric))[:, 0]
        )
        seqs = np.arange(reservation.first_seq, reservation.first_seq + len(tokens), dtype=np.int64)
        payloads = [
            opened.cipher.seal_item(t, int(s), p)
            for t, s, p in zip(tokens, seqs, plaintexts, strict=True)
        ]
        blocks = seal_assigned(
            opened.cipher, version, lists, seqs, vectors, ctx.settings.block_max_vectors
        )
        n_items = await item_repo.write_batch(
            conn, opened.row.id, tokens, seqs.tolist(), payloads, blocks
        )
    after = await maintenance.after_write(ctx, opened, n_items)
    return UpsertOutcome(len(tokens), after.training_message, after.warning)


async def get_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, ids: Sequence[str]
) -> list[ItemPayload]:
    """The stored items among `ids`, in request order; missing ids are left out."""
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        unique_ids = list(dict.fromkeys(ids))
        tokens = [opened.cipher.id_token(i) for i in unique_ids]
        rows = await item_repo.items_by_tokens(conn, opened.row.id, tokens) if tokens else []
    by_token = {row.id_token: row for row in rows}
    found = []
    for item_id, token in zip(unique_ids, tokens, strict=True):
        row = by_token.get(token)
        if row is not None:
            payload = open_payload(opened.cipher, row)
            if payload.id != item_id:
                raise StoredDataCorrupt("Stored item does not match its id token")
            found.append(payload)
    return found


async def delete_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, ids: Sequence[str]
) -> int:
    """Delete items by id; returns how many existed."""
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        tokens = [opened.cipher.id_token(i) for i in dict.fromkeys(ids)]
        deleted = await item_repo.delete_items(conn, opened.row.id, tokens) if tokens else 0
        await index_repo.add_items(conn, opened.row.id, -deleted)
    await maintenance.after_write(ctx, opened, opened.row.n_items - deleted)
    return deleted


async def list_ids(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> list[str]:
    """Every live item id (decrypted page by page)."""
    ids: list[str] = []
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        async for page in item_repo.stream_items(conn, opened.row.id):
            ids.extend(open_payload(opened.cipher, row).id for row in page)
    return ids


async def count_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> int:
    """Number of live items."""
    async with ctx.db.transaction() as conn:
        return (await open_index(conn, ctx, tenant, name, index_key)).row.n_items
