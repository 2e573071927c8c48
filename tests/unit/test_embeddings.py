"""The embedding model loader on its own (no database, no HTTP)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.embeddings import DEFAULT_MODEL
from app.embeddings.loader import ModelCache


def test_concurrent_first_use_loads_the_model_once() -> None:
    cache = ModelCache()
    barrier = threading.Barrier(4)

    def first_use(_: int) -> Any:
        barrier.wait()
        return cache.get(DEFAULT_MODEL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        models = list(pool.map(first_use, range(4)))
    assert all(model is models[0] for model in models)
    assert cache.loads == 1
