"""How a training run spends `max_memory`: hold the vectors when they fit, else stream them."""

from __future__ import annotations

import re

import pytest

from app.errors import InvalidInput
from app.services.training import PAGE_BLOCKS, MemoryPlan, TrainParams, plan_memory

# 100,000 x 128 vectors in 1,024-vector blocks, 632 lists: 51 MB of float32.
SHAPE = {"n_vectors": 100_000, "dimension": 128, "n_lists": 632, "block_size": 1024}


def test_without_max_memory_the_vectors_are_held() -> None:
    assert plan_memory(**SHAPE, params=TrainParams()) == MemoryPlan(
        hold=True, page_blocks=PAGE_BLOCKS
    )


def test_vectors_that_fit_max_memory_are_held() -> None:
    assert plan_memory(**SHAPE, params=TrainParams(max_memory_mb=128)).hold


def test_vectors_that_do_not_fit_max_memory_stream_through_a_buffer_of_whole_batches() -> None:
    plan = plan_memory(**SHAPE, params=TrainParams(max_memory_mb=24))
    assert not plan.hold
    assert plan.buffer_vectors >= TrainParams().batch_size
    assert 1 <= plan.page_blocks <= PAGE_BLOCKS


def test_a_max_memory_too_small_names_the_least_that_works() -> None:
    with pytest.raises(InvalidInput) as refused:
        plan_memory(**SHAPE, params=TrainParams(max_memory_mb=4))
    match = re.search(r"needs at least (\d+) MB", str(refused.value))
    assert match is not None
    least = int(match.group(1))
    assert not plan_memory(**SHAPE, params=TrainParams(max_memory_mb=least)).hold
