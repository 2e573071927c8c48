"""The per-process cache of search views: an index row with its active block listing.

A cached view may be stale. Whoever uses one reads the index's signature in
the same statement as the data it needs, and on a mismatch forgets the view
and reads a fresh one (`read_view`) in a snapshot with the rest of its reads.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import IndexNotFound
from app.services.context import ServiceContext
from app.store import blocks as block_repo
from app.store.blocks import SearchView

MAX_CACHED_VIEWS = 10_000


def cached_view(ctx: ServiceContext, tenant: str, name: str) -> SearchView | None:
    """The view this process last read of the index, if any."""
    return ctx.views.get((tenant, name))


def forget_view(ctx: ServiceContext, tenant: str, name: str) -> None:
    """Drop the index's cached view (it no longer matches the database)."""
    ctx.views.pop((tenant, name), None)


async def read_view(
    conn: AsyncConnection, ctx: ServiceContext, tenant: str, name: str
) -> SearchView:
    """The index's view as `conn` sees it, remembered for later requests."""
    view = await block_repo.search_view(conn, tenant, name)
    if view is None:
        forget_view(ctx, tenant, name)
        raise IndexNotFound(name)
    if len(ctx.views) >= MAX_CACHED_VIEWS:
        ctx.views.clear()
    ctx.views[tenant, name] = view
    return view
