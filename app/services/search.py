"""Similarity search: scan the active version's blocks, validate candidates, decrypt the top-k.

Candidates come from the encrypted vector blocks; an entry counts only while
an item row still holds its write sequence, so overwritten and deleted items
never appear. Candidates are examined in order of score, in growing rounds,
until each query has `top_k` live items that pass its metadata filter (or the
candidates run out). Only the winners' payloads are decrypted, unless a
filter needs their metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.crypto.aead import AuthenticationFailed
from app.errors import InvalidFilter, StoredDataCorrupt
from app.filters import FilterError, compile_filter
from app.ivf.blocks import unpack_block
from app.ivf.distance import Metric, exact_distances, scan_scores, smallest
from app.ivf.vectors import Matrix, vector_matrix
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex, open_index
from app.services.payload import ItemPayload
from app.services.vectors import open_payload
from app.store import blocks as block_repo
from app.store import items as item_repo
from app.store.items import ItemRow

Predicate = Callable[[Mapping[str, object]], bool]


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """One query request: vectors (not yet checked) and its knobs."""

    vectors: Sequence[Sequence[float]] | Matrix
    top_k: int
    filters: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One result: the decrypted item and its distance to the query."""

    item: ItemPayload
    distance: float


@dataclass(slots=True)
class _QueryState:
    order: np.ndarray[Any, np.dtype[np.intp]]
    examined: int = 0
    hits: list[tuple[float, int]] = field(default_factory=list)


def _compile(filters: Mapping[str, Any] | None) -> Predicate | None:
    if not filters:
        return None
    try:
        return compile_filter(filters)
    except FilterError as exc:
        raise InvalidFilter(f"Invalid filter: {exc}") from exc


def _open_blocks(opened: OpenIndex, blocks: Sequence[block_repo.BlockRow]) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]], Matrix
]:
    seq_parts, vector_parts = [], []
    for block in blocks:
        try:
            plaintext = opened.cipher.open_block(
                block.version, block.list_tag, block.block_id, block.ciphertext
            )
        except AuthenticationFailed as exc:
            raise StoredDataCorrupt("Stored vector block failed authentication") from exc
        seqs, vectors = unpack_block(plaintext)
        seq_parts.append(seqs)
        vector_parts.append(vectors)
    return np.concatenate(seq_parts), np.concatenate(vector_parts)


async def query(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, spec: QuerySpec
) -> list[list[Hit]]:
    """The `top_k` nearest live items for each query vector, nearest first."""
    predicate = _compile(spec.filters)
    async with ctx.db.transaction() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        queries = vector_matrix(spec.vectors, opened.row.dimension)
        blocks = await block_repo.blocks_of_version(conn, opened.row.id, opened.row.active_version)
        if not blocks:
            return [[] for _ in range(len(queries))]
        seqs, vectors = _open_blocks(opened, blocks)
        metric = Metric(opened.row.metric)
        scores = scan_scores(queries, vectors, metric)
        shortlist = max(2 * spec.top_k, spec.top_k + 32)
        states = [_QueryState(order=smallest(row, shortlist)) for row in scores]
        rows: dict[int, ItemRow] = {}
        payloads: dict[int, ItemPayload] = {}
        checked: set[int] = set()
        while True:
            active = [
                st for st in states if len(st.hits) < spec.top_k and st.examined < len(st.order)
            ]
            if not active:
                break
            wanted = {int(s) for st in active for s in seqs[st.order[st.examined :]]} - checked
            if wanted:
                for row in await item_repo.items_by_seqs(conn, opened.row.id, wanted):
                    rows[row.seq] = row
                checked |= wanted
            for q, st in enumerate(states):
                if len(st.hits) >= spec.top_k or st.examined >= len(st.order):
                    continue
                fresh = st.order[st.examined :]
                st.examined = len(st.order)
                live = [p for p in fresh.tolist() if int(seqs[p]) in rows]
                if predicate is not None:
                    live = [
                        p for p in live
                        if predicate(_payload(opened, rows[int(seqs[p])], payloads).metadata or {})
                    ]
                if live:
                    positions = np.asarray(live, dtype=np.intp)
                    dists = exact_distances(queries[q], vectors[positions], metric)
                    st.hits.extend(zip(dists.tolist(), seqs[positions].tolist(), strict=True))
                if len(st.hits) < spec.top_k and len(st.order) < len(seqs):
                    wider = smallest(scores[q], min(len(seqs), 4 * len(st.order)))
                    st.order = np.concatenate([st.order, wider[~np.isin(wider, st.order)]])
    winners = [sorted(st.hits)[: spec.top_k] for st in states]
    return [[Hit(_payload(opened, rows[s], payloads), d) for d, s in w] for w in winners]


def _payload(opened: OpenIndex, row: ItemRow, cache: dict[int, ItemPayload]) -> ItemPayload:
    hit = cache.get(row.seq)
    if hit is None:
        hit = cache[row.seq] = open_payload(opened.cipher, row)
    return hit
