"""Running CPU work while a statement is in flight (app.engine.overlap)."""

from __future__ import annotations

import asyncio

import pytest

from app.engine.overlap import alongside


async def test_work_runs_after_the_statement_has_started_and_both_results_return() -> None:
    events: list[str] = []

    async def statement() -> str:
        events.append("statement sent")
        await asyncio.sleep(0.01)
        events.append("statement done")
        return "rows"

    def work() -> int:
        events.append("work")
        return 7

    assert await alongside(statement(), work) == ("rows", 7)
    assert events == ["statement sent", "work", "statement done"]


async def test_failing_work_waits_for_the_statement_before_raising() -> None:
    finished = asyncio.Event()

    async def statement() -> None:
        await asyncio.sleep(0.01)
        finished.set()

    def work() -> None:
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        await alongside(statement(), work)
    assert finished.is_set()
