"""Work that follows a write: auto-training when an index has grown, a fold of its
write tail when the tail is due (app.engine.tail), compaction when its blocks
have gone stale or fragmented. All run in the background under the
index's advisory lock, so across all service processes one job runs per index.

Auto-training waits for a pause in the writes (CIPHERVEC_AUTO_TRAIN_QUIET_S,
at most CIPHERVEC_AUTO_TRAIN_MAX_DELAY_S): started in the middle of a bulk
load, it would train on a fraction of the items, slow the rest of the load
down (trained upserts assign lists and write a small block per list) and be
repeated as the index doubled. When it wakes, it checks the index again: a
train request may have done the work meanwhile.

The background job keeps the index's cipher (derived from the key of the
request that started it) only until it finishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

from app.crypto.index_cipher import IndexCipher
from app.engine.compaction import compact_if_needed
from app.engine.locking import maintenance_lock
from app.engine.tail import fold_tail, tail_due
from app.errors import CiphervecError, IndexNotFound
from app.ivf.distance import Metric
from app.services.context import ServiceContext
from app.services.indexes import OpenIndex
from app.services.training import TrainParams, run_locked
from app.store import indexes as index_repo
from app.store.indexes import IndexRow

log = logging.getLogger("ciphervec.maintenance")

# Least wait before a due training looks again at an index another job holds.
_BUSY_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class AfterWrite:
    """What an upsert reports about follow-up work."""

    training_message: str | None = None
    warning: str | None = None


def wants_training(ctx: ServiceContext, row: IndexRow, n_items: int) -> bool:
    """Whether an index of `n_items` should be (re)trained."""
    settings = ctx.settings
    if not settings.auto_train:
        return False
    if row.active_version == 0:
        return n_items >= settings.auto_train_threshold
    return n_items >= settings.retrain_growth * max(row.trained_vectors, 1)


async def after_write(ctx: ServiceContext, opened: OpenIndex, n_items: int) -> AfterWrite:
    """Start compaction in the background when due; schedule auto-training."""
    row = opened.row
    now = time.monotonic()
    ctx.last_writes[row.id] = now
    if wants_training(ctx, row, n_items):
        if row.id in ctx.trainings_due:
            return AfterWrite()
        ctx.trainings_due.add(row.id)
        ctx.spawn(asyncio.create_task(_train_when_quiet(ctx, opened.cipher, row, now)))
        return AfterWrite(f"Index training has been triggered (vectors: {n_items})")
    last = ctx.compaction_checks.setdefault(opened.row.id, now)
    if tail_due(ctx.settings, row) or now - last >= ctx.settings.compaction_check_interval_s:
        ctx.compaction_checks[opened.row.id] = now
        try:
            await _start(ctx, opened.cipher, opened.row, train=False)
        except CiphervecError as exc:
            log.warning("compaction check failed: %s", exc.detail)
    return AfterWrite()


async def _train_when_quiet(
    ctx: ServiceContext, cipher: IndexCipher, row: IndexRow, since: float
) -> None:
    """Auto-train the index once its writes pause, if it still needs it then; while
    another job holds the index, look again after the next pause."""
    settings = ctx.settings
    try:
        while True:
            await _writes_pause(ctx, row.id, since)
            async with ctx.db.transaction() as conn:
                now = await index_repo.find_index(conn, row.tenant, row.name)
            if now is None or now.id != row.id or not wants_training(ctx, now, now.n_items):
                return
            if await _start(ctx, cipher, now, train=True):
                return
            await asyncio.sleep(max(settings.auto_train_quiet_s, _BUSY_RETRY_S))
            since = time.monotonic()
    except CiphervecError as exc:
        log.warning("auto-training check of index %s failed: %s", row.id, exc.detail)
    except Exception:
        log.exception("auto-training check of index %s failed", row.id)
    finally:
        ctx.trainings_due.discard(row.id)


async def _writes_pause(ctx: ServiceContext, index_id: int, since: float) -> None:
    """Return once this process has not written to the index for the quiet period,
    or the maximum delay after `since`."""
    settings = ctx.settings
    while True:
        quiet_at = ctx.last_writes.get(index_id, since) + settings.auto_train_quiet_s
        wake = min(quiet_at, since + settings.auto_train_max_delay_s)
        if (delay := wake - time.monotonic()) <= 0:
            return
        await asyncio.sleep(delay)


async def _start(ctx: ServiceContext, cipher: IndexCipher, row: IndexRow, *, train: bool) -> bool:
    """Take the index's lock now and hand it to a background job; False if it is busy."""
    stack = AsyncExitStack()
    held = await stack.enter_async_context(maintenance_lock(ctx, row.id))
    if not held:
        await stack.aclose()
        return False
    ctx.spawn(asyncio.create_task(_job(ctx, stack, cipher, row, train=train)))
    return True


async def _job(
    ctx: ServiceContext, stack: AsyncExitStack, cipher: IndexCipher, row: IndexRow, *, train: bool
) -> None:
    async with stack:
        try:
            if train:
                with ctx.metrics.training_run("auto"):
                    result = await run_locked(ctx, cipher, row, TrainParams())
                log.info("auto-trained index %s: %s", row.id, result)
            else:
                await fold_tail(ctx, cipher, Metric(row.metric))
                await compact_if_needed(ctx, cipher)
        except IndexNotFound:
            log.info("index %s was deleted during its background %s", row.id,
                     "training" if train else "compaction")
        except Exception:
            log.exception("background %s of index %s failed", "training" if train else "compaction",
                          row.id)
