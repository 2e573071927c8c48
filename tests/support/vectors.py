"""Vectors of a chosen length, rounded to float32 without going over it, and clustered
vectors whose lengths vary widely (for the dot product)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scaled_to(direction: Sequence[float], squared_norm: float) -> list[float]:
    """`direction` scaled in float64 to `squared_norm`, rounded to float32 and, where
    rounding went over, nudged back inside (as measured in float64)."""
    unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    vector = (unit * np.sqrt(squared_norm)).astype(np.float32)
    while float(np.sum(vector.astype(np.float64) ** 2)) > squared_norm:
        vector = np.nextafter(vector, np.float32(0))
    return [float(x) for x in vector]


def varied_norms(n: int, dimension: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """`n` float32 vectors whose directions gather around `clusters` random centres
    and whose lengths spread log-uniformly over 0.1-10 (a 100x range), so the
    largest inner products belong to long vectors of roughly the right direction.
    Rows drawn from one call share the centres: held-out rows make fair queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimension))
    rows = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dimension))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    lengths = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(n, 1)))
    return np.asarray(rows * lengths, dtype=np.float32)
