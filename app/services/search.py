"""Similarity search over the active index version.

Untrained, every block is scanned (exact search). Trained, each query scans
the blocks of its `n_probes` nearest lists and the index's write tail (recent
small writes, bounded in size, until a fold moves them into their lists).
Candidates count only while an item row still holds their write sequence, so
overwritten and deleted items never appear. Candidates are examined in order
of score, in growing rounds, until each query has `top_k` live items that
pass its metadata filter (or its candidates run out). Only the winners'
payloads are decrypted, unless a filter needs their metadata; a winner's
vector is the one scanned from its block.

Searches run outside a transaction, each statement on its own snapshot: the
view (index row and block listing) may come from the process cache, and the
first item round trip also reads the index's signature, so a view that no
longer matches the database (a write, a compaction, a version switch) is
replaced by a fresh one, read or extended (app.engine.views), and the
search starts again on it. A search therefore
never mixes two index versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.blockstore import MissingCentroids, open_blocks_off_loop
from app.engine.cpu import run_cpu
from app.engine.payload import ItemPayload
from app.engine.views import cached_view, forget_view, read_view
from app.errors import (
    InvalidFilter,
    InvalidInput,
    KeySentToKmsIndex,
    WrongIndexKey,
)
from app.filters import FilterError, compile_filter
from app.ivf.blocks import TAIL_LIST_NO
from app.ivf.distance import Metric, exact_distances, scan_scores, smallest
from app.ivf.kmeans import auto_n_probes, probe_lists
from app.ivf.vectors import Matrix, vector_matrix
from app.services import texts as text_service
from app.services.bounds import AnswerBudget, check_query_shape
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex, open_row
from app.services.vectors import open_payload
from app.store import blocks as block_repo
from app.store import items as item_repo
from app.store.blocks import BlockRef, SearchView
from app.store.items import ItemRow

Predicate = Callable[[Mapping[str, object]], bool]
Positions = np.ndarray[Any, np.dtype[np.intp]]


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """One query request: vectors (not yet checked) or texts to embed, and its knobs."""

    vectors: Sequence[Sequence[float]] | Matrix | None
    top_k: int
    n_probes: int | None = None
    filters: Mapping[str, Any] | None = None
    texts: Sequence[str] | None = None
    include: Collection[str] = ()  # fields the answer carries, which size it


@dataclass(frozen=True, slots=True)
class Hit:
    """One result: the decrypted item and its distance to the query."""

    item: ItemPayload
    distance: float


@dataclass(slots=True)
class _QueryState:
    """One query's candidates (positions into the scanned entries) and progress."""

    candidates: Positions
    scores: np.ndarray[Any, np.dtype[np.float32]]
    order: Positions
    examined: int = 0
    hits: list[tuple[float, int, int]] = field(default_factory=list)  # distance, seq, position

    def unexamined(self) -> Positions:
        return self.candidates[self.order[self.examined :]]

    def widen(self) -> None:
        """Extend the ordered shortlist fourfold."""
        wider = smallest(self.scores, min(len(self.scores), 4 * len(self.order)))
        self.order = np.concatenate([self.order, wider[~np.isin(wider, self.order)]])


def _compile(filters: Mapping[str, Any] | None) -> Predicate | None:
    if not filters:
        return None
    try:
        return compile_filter(filters)
    except FilterError as exc:
        raise InvalidFilter(f"Invalid filter: {exc}") from exc


# The list number scanned entries of the write tail go by (no centroid's).
_TAIL = -1

# Below this share of live entries the first round's shortlist stops growing.
_MIN_LIVE_SHARE = 0.25


class _StaleView(Exception):
    """The cached view no longer matches the database: read it again."""


async def query(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, spec: QuerySpec
) -> list[list[Hit]]:
    """The `top_k` nearest live items for each query vector, nearest first.

    The index row and its block listing come from a per-process cache; see
    the module docstring for how a stale view is caught.
    """
    given = spec.texts if spec.texts is not None else spec.vectors
    check_query_shape(ctx.settings, len(given) if given is not None else 0, spec.top_k)
    predicate = _compile(spec.filters)
    query_rows = await _query_vectors(ctx, tenant, name, index_key, spec)
    # Cached view, then a fresh one; under a stream of concurrent writes the
    # last try reads view and items in one REPEATABLE READ snapshot, where a
    # fresh view cannot go stale.
    # A stale view is extended with the blocks written since (app.engine.views).
    stale: SearchView | None = None
    for fresh, snapshot in ((False, False), (True, False), (True, True)):
        connection = ctx.db.transaction(snapshot=True) if snapshot else ctx.db.autocommit()
        async with connection as conn:
            view = None if fresh else cached_view(ctx, tenant, name)
            if view is None:
                view = await read_view(conn, ctx, tenant, name, base=stale)
            try:
                return await _search(conn, ctx, view, index_key, query_rows, spec, predicate)
            except MissingCentroids:
                if snapshot:
                    raise
                stale = None
                forget_view(ctx, tenant, name)
            except _StaleView:
                stale = view
                forget_view(ctx, tenant, name)
            except (WrongIndexKey, KeySentToKmsIndex):
                # A cached view may predate a key rotation made elsewhere.
                if fresh:
                    raise
                stale = None
                forget_view(ctx, tenant, name)
    raise AssertionError("a view read in the same snapshot cannot be stale")


async def _query_vectors(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, spec: QuerySpec
) -> Sequence[Sequence[float]] | Matrix:
    """The query vectors as given, or the texts embedded with the index's model
    (once, before the search: a retry on a fresh view does not embed again)."""
    if spec.texts is None:
        if spec.vectors is None:
            raise InvalidInput("No query vectors given")
        return spec.vectors
    if not spec.texts or not all(text_service.has_text(t) for t in spec.texts):
        raise InvalidInput("query_contents must be non-blank text")
    model = await text_service.index_model(ctx, tenant, name, index_key)
    if model is None:
        raise InvalidInput("query_contents needs an index created with an embedding_model")
    return await text_service.embed(ctx, model, spec.texts)


@dataclass(frozen=True, slots=True)
class _Scanned:
    """The entries a search scans: their write sequences, vectors and, when queries
    probe different lists, the list each entry is in."""

    seqs: np.ndarray[Any, np.dtype[np.int64]]
    vectors: Matrix
    lists: np.ndarray[Any, np.dtype[np.int64]] | None


# Work below these sizes runs on the event loop (see app.engine.cpu): scoring
# of about a million multiply-adds or centroid distances, a thousand hits, and
# the payloads of two hundred candidates that a filter decrypts.
_SCORES_IN_PLACE = 1_000_000
_HITS_IN_PLACE = 1_000
_PAYLOADS_IN_PLACE = 200
# Query rows are searched in groups whose score matrices together stay under
# this many floats (16 MB), so a batch of many rows over many entries does not
# hold every row's scores at once.
_GROUP_SCORES = 4_000_000
_MAX_GROUP_ROWS = 256


async def _search(
    conn: AsyncConnection,
    ctx: ServiceContext,
    view: SearchView,
    index_key: bytes | None,
    query_rows: Sequence[Sequence[float]] | Matrix,
    spec: QuerySpec,
    predicate: Predicate | None,
) -> list[list[Hit]]:
    opened = await open_row(ctx, view.row, index_key)
    queries = vector_matrix(query_rows, opened.row.dimension)
    metric = Metric(opened.row.metric)
    version = opened.row.active_version
    centroids = await ctx.centroids.load(conn, opened.cipher, version)
    refs: Sequence[BlockRef] = view.blocks
    probes = None
    if centroids is not None:
        n_probes = (
            spec.n_probes or opened.row.auto_n_probes or auto_n_probes(len(centroids), metric)
        )
        probes = await run_cpu(
            lambda: probe_lists(queries, centroids, metric, n_probes),
            heavy=queries.size * len(centroids) > _SCORES_IN_PLACE,
        )
        tags = {opened.cipher.list_tag(version, n): n for n in np.unique(probes).tolist()}
        # Every query scans the write tail (recent writes not yet in their lists).
        tags[opened.cipher.list_tag(version, TAIL_LIST_NO)] = _TAIL
        refs = view.blocks_of_lists(tags)
    blocks = await block_repo.block_ciphertexts(conn, ctx.blocks, opened.row.id, version, refs)
    ctx.metrics.search_blocks.observe(len(blocks))
    seqs, vectors = await open_blocks_off_loop(opened.cipher, blocks)
    scanned = _Scanned(
        seqs, vectors,
        # Which list each scanned entry is in, when queries probe different lists.
        None if probes is None or len(queries) == 1
        else np.repeat([tags[b.list_tag] for b in blocks], [b.n_vectors for b in blocks]),
    )
    shortlist = _shortlist(spec.top_k, view, filtered=predicate is not None)
    budget = AnswerBudget(ctx.settings, spec.include, opened.row.dimension)
    payloads: dict[int, ItemPayload] = {}
    results: list[list[Hit]] = []
    group_rows = max(1, min(_MAX_GROUP_ROWS, _GROUP_SCORES // max(1, len(seqs))))
    for start in range(0, len(queries), group_rows):
        rows = range(start, min(start + group_rows, len(queries)))
        states = await run_cpu(
            partial(_first_scores, queries, rows, probes, scanned, metric, shortlist),
            heavy=len(rows) * vectors.size > _SCORES_IN_PLACE,
        )
        found = await _select(
            conn, opened, view.signature if start == 0 else None, states, scanned, queries[rows],
            metric, spec.top_k, predicate, payloads,
        )
        winners = [sorted(st.hits)[: spec.top_k] for st in states]
        budget.add(
            (len(found[s].payload) for hits in winners for _, s, _ in hits),
            (len(found[s].payload) for s in {s for hits in winners for _, s, _ in hits}
             if s not in payloads),
        )
        results.extend(await run_cpu(
            partial(_hits, opened, winners, found, payloads, vectors),
            heavy=sum(map(len, winners)) > _HITS_IN_PLACE,
        ))
    return results


def _first_scores(
    queries: Matrix, rows: range, probes: np.ndarray[Any, Any] | None, scanned: _Scanned,
    metric: Metric, shortlist: int,
) -> list[_QueryState]:
    """Score each query row of `rows` against its candidates and order its first shortlist."""
    states = []
    for q in rows:
        if probes is None or scanned.lists is None:
            candidates = np.arange(len(scanned.seqs))
            pool = scanned.vectors  # every scanned entry is a candidate: no copy
        else:
            candidates = np.flatnonzero(
                np.isin(scanned.lists, probes[q]) | (scanned.lists == _TAIL)
            )
            pool = scanned.vectors[candidates]
        scores = (
            scan_scores(queries[q][np.newaxis], pool, metric)[0]
            if len(candidates)
            else np.zeros(0, dtype=np.float32)
        )
        states.append(_QueryState(candidates, scores, smallest(scores, shortlist)))
    return states


def _hits(
    opened: OpenIndex,
    winners: list[list[tuple[float, int, int]]],
    found: dict[int, ItemRow],
    payloads: dict[int, ItemPayload],
    vectors: Matrix,
) -> list[list[Hit]]:
    """Each query's winners (distance, sequence, position) with their decrypted items."""
    return [
        [Hit(replace(_payload(opened, found[s], payloads), vector=vectors[p]), d)
         for d, s, p in hits]
        for hits in winners
    ]


def _shortlist(top_k: int, view: SearchView, *, filtered: bool) -> int:
    """Candidates per query checked in the first round: enough, at the index's share
    of stale entries, that top_k of them are live, plus a margin.

    Each is one lookup in the item round trip (about 7 us each on this machine,
    measured; 42 of them were most of its cost). A shortfall costs another round.
    """
    if filtered:  # a filter rejects an unknown share
        return max(2 * top_k, top_k + 32)
    entries = view.n_entries
    live_share = min(1.0, view.row.n_items / entries) if entries else 1.0
    expected = math.ceil(top_k / max(live_share, _MIN_LIVE_SHARE))
    return expected + math.ceil(expected / 4) + 2


async def _select(
    conn: AsyncConnection,
    opened: OpenIndex,
    signature: tuple[int, int] | None,
    states: list[_QueryState],
    scanned: _Scanned,
    queries: Matrix,
    metric: Metric,
    top_k: int,
    predicate: Predicate | None,
    payloads: dict[int, ItemPayload],
) -> dict[int, ItemRow]:
    """Examine candidates in rounds until every query has top_k live matches or runs
    out; returns the item rows of the candidates found live, by write sequence.

    With `signature`, the first round also checks that the view is still the
    index's (raising _StaleView if not). `payloads` caches decrypted payloads
    across calls.
    """
    seqs = scanned.seqs
    rows: dict[int, ItemRow] = {}
    checked: set[int] = set()
    while True:
        active = [st for st in states if len(st.hits) < top_k and st.examined < len(st.order)]
        wanted = {int(s) for st in active for s in seqs[st.unexamined()]} - checked
        if signature is not None:
            current, found = await item_repo.items_by_seqs_checked(conn, opened.row.id, wanted)
            if current != signature:
                raise _StaleView
            signature = None
        elif wanted:
            found = await item_repo.items_by_seqs(conn, opened.row.id, wanted)
        else:
            found = []
        if not active:
            return rows
        for row in found:
            rows[row.seq] = row
        checked |= wanted
        fresh = sum(len(st.order) - st.examined for st in active)
        await run_cpu(
            partial(_examine, opened, states, rows, scanned, queries, metric, top_k, predicate,
                    payloads),
            heavy=fresh > (_PAYLOADS_IN_PLACE if predicate is not None else _HITS_IN_PLACE),
        )


def _examine(
    opened: OpenIndex,
    states: list[_QueryState],
    rows: dict[int, ItemRow],
    scanned: _Scanned,
    queries: Matrix,
    metric: Metric,
    top_k: int,
    predicate: Predicate | None,
    payloads: dict[int, ItemPayload],
) -> None:
    """One round: each query's unexamined candidates that are live (and pass the
    filter) become hits with their exact distance; a query still short widens."""
    seqs, vectors = scanned.seqs, scanned.vectors
    for q, st in enumerate(states):
        if len(st.hits) >= top_k or st.examined >= len(st.order):
            continue
        fresh = st.unexamined().tolist()
        st.examined = len(st.order)
        live = [p for p in fresh if int(seqs[p]) in rows]
        if predicate is not None:
            live = [
                p for p in live
                if predicate(_payload(opened, rows[int(seqs[p])], payloads).metadata or {})
            ]
        if live:
            positions = np.asarray(live, dtype=np.intp)
            dists = exact_distances(queries[q], vectors[positions], metric)
            st.hits.extend(zip(dists.tolist(), seqs[positions].tolist(), live, strict=True))
        if len(st.hits) < top_k and len(st.order) < len(st.scores):
            st.widen()


def _payload(opened: OpenIndex, row: ItemRow, cache: dict[int, ItemPayload]) -> ItemPayload:
    hit = cache.get(row.seq)
    if hit is None:
        hit = cache[row.seq] = open_payload(opened.cipher, row)
    return hit
