"""Rerunning transactions that PostgreSQL aborted for a conflict."""

from __future__ import annotations

import pytest

from app.engine.retry import ATTEMPTS, retry_conflicts
from app.errors import InvalidInput, TransactionConflict


class FailsFirst:
    """An attempt that raises `error` on its first `times` calls, then succeeds."""

    def __init__(self, times: int, error: Exception) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "done"


async def test_a_transaction_that_lost_a_conflict_is_rerun_until_it_succeeds() -> None:
    attempt = FailsFirst(ATTEMPTS - 1, TransactionConflict("deadlock"))

    assert await retry_conflicts(attempt) == "done"
    assert attempt.calls == ATTEMPTS


async def test_a_conflict_that_persists_reaches_the_caller_as_409() -> None:
    attempt = FailsFirst(ATTEMPTS, TransactionConflict("deadlock"))

    with pytest.raises(TransactionConflict) as raised:
        await retry_conflicts(attempt)
    assert raised.value.status_code == 409
    assert attempt.calls == ATTEMPTS


async def test_other_errors_are_not_rerun() -> None:
    attempt = FailsFirst(1, InvalidInput("bad"))

    with pytest.raises(InvalidInput):
        await retry_conflicts(attempt)
    assert attempt.calls == 1
