"""Figures the operator's tools report: refreshing the per-index gauges of /metrics."""

from __future__ import annotations

import logging

from app.errors import ServiceUnavailable
from app.services.context import ServiceContext
from app.store import stats as repo

log = logging.getLogger("ciphervec.metrics")


async def refresh_index_sizes(ctx: ServiceContext) -> None:
    """Read every index's vector count into the metrics; keep the last figures (and
    say so in the log) when PostgreSQL is unavailable, so a scrape never fails on it."""
    try:
        async with ctx.db.transaction() as conn:
            sizes = await repo.index_sizes(conn)
    except ServiceUnavailable:
        log.warning("index sizes not refreshed: database unavailable")
        return
    ctx.metrics.set_index_sizes(sizes)
