"""CPU-heavy steps of a request, kept off the event loop when they are large.

The event loop serves every request of the process; a step that holds it for
long (decrypting megabytes of blocks, scoring thousands of query rows, building
a large answer) stalls all of them, health checks included. Such a step runs on
a worker thread instead. numpy and AES-GCM release the GIL while they work,
and a thread running Python code yields it to the loop every few milliseconds,
as long as no single call into C runs long: callers keep each call bounded
(blocks one at a time, JSON in pieces). A small step runs in place, where a
thread hand-off (about 0.1 ms) would cost more than the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_cpu(work: Callable[[], T], *, heavy: bool) -> T:
    """The result of `work`, computed on a worker thread when `heavy`, else here."""
    if heavy:
        return await asyncio.to_thread(work)
    return work()
