"""The per-process cache of search views: an index row with its active block listing.

A cached view may be stale. Whoever uses one reads the index's signature in
the same statement as the data it needs, and on a mismatch reads a fresh one
(`read_view`) in a snapshot with the rest of its reads: as a rule only the
blocks written since the stale view, which is extended with them. A writer
extends its own process's view after its commit (`extend_after_write`), so
the next query there finds it current.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.context import EngineContext
from app.errors import IndexNotFound
from app.store import blocks as block_repo
from app.store.blocks import BlockRef, SearchView
from app.store.indexes import IndexRow

MAX_CACHED_VIEWS = 10_000


def cached_view(ctx: EngineContext, tenant: str, name: str) -> SearchView | None:
    """The view this process last read of the index, if any."""
    return ctx.views.get((tenant, name))


def remember_view(ctx: EngineContext, tenant: str, name: str, view: SearchView) -> None:
    """Cache `view` as the index's latest."""
    if len(ctx.views) >= MAX_CACHED_VIEWS:
        ctx.views.clear()
    ctx.views[tenant, name] = view


def extend_after_write(
    ctx: EngineContext, tenant: str, name: str, row: IndexRow, first_seq: int, last_seq: int,
    added: Sequence[BlockRef],
) -> None:
    """After a committed write of sequences first_seq..last_seq (and the blocks
    `added`), extend the cached view when it was current just before that write
    (`row` is the index row as the write left it)."""
    view = cached_view(ctx, tenant, name)
    if view is not None and view.next_seq == first_seq - 1 and view.extends(row):
        remember_view(ctx, tenant, name, view.extended(row, last_seq, added))


def forget_view(ctx: EngineContext, tenant: str, name: str) -> None:
    """Drop the index's cached view (it no longer matches the database)."""
    ctx.views.pop((tenant, name), None)


async def read_view(
    conn: AsyncConnection, ctx: EngineContext, tenant: str, name: str,
    base: SearchView | None = None,
) -> SearchView:
    """The index's view as `conn` sees it, remembered for later requests; given the
    stale `base`, only what was written since it is read when that suffices."""
    view = await block_repo.search_view(conn, tenant, name, base)
    if view is None:
        forget_view(ctx, tenant, name)
        raise IndexNotFound(name)
    remember_view(ctx, tenant, name, view)
    return view
