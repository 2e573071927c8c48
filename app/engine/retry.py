"""Rerunning a write whose transaction PostgreSQL aborted as a deadlock victim or for a
serialization failure.

Writers take their locks in one order (the index row first, see
app.store.indexes), so a conflict should not happen; this is the net under
that rule, for orders PostgreSQL takes inside one statement (an index's
primary-key entries, say). A rerun is safe because the aborted transaction
left nothing behind and the client has heard nothing yet. Conflicts that
persist reach the client as 409.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.errors import TransactionConflict

log = logging.getLogger("ciphervec.retry")

T = TypeVar("T")

ATTEMPTS = 4
# The first rerun waits about this long, each next one twice as long (with
# jitter, so two conflicting writers do not meet again in step).
_FIRST_BACKOFF_S = 0.01


async def retry_conflicts(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, rerun up to ATTEMPTS times in all while it raises TransactionConflict."""
    for number in range(1, ATTEMPTS):
        try:
            return await attempt()
        except TransactionConflict:
            log.info("transaction conflict, rerunning (attempt %d of %d)", number + 1, ATTEMPTS)
            jitter = 0.5 + random.random()  # noqa: S311 - spreads reruns, guards nothing
            await asyncio.sleep(_FIRST_BACKOFF_S * 2 ** (number - 1) * jitter)
    return await attempt()
