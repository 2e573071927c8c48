"""Overlapping CPU work with a statement in flight on the same connection.

An upsert is CPU work in this process (encoding, encryption) and insert work
in PostgreSQL's backend, two processes that can run on two cores at once. A
statement is sent, then the next chunk is prepared while PostgreSQL executes
it, so a batch costs about the larger of the two instead of their sum.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

Statement = TypeVar("Statement")
Work = TypeVar("Work")


async def alongside(
    statement: Awaitable[Statement], work: Callable[[], Work]
) -> tuple[Statement, Work]:
    """Run `work` on this thread while `statement` executes; return both results.

    The caller must not use the statement's connection until this returns.
    """
    pending = asyncio.ensure_future(statement)
    # One turn of the loop lets the statement reach the socket before the loop
    # is busy with `work`; the backend then executes it meanwhile.
    await asyncio.sleep(0)
    try:
        result = work()
    except BaseException:
        # The connection is still busy with the statement: let it finish before
        # the caller's transaction unwinds, and report the work's error.
        await asyncio.gather(pending, return_exceptions=True)
        raise
    return await pending, result
