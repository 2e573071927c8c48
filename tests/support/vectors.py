"""Vectors of a chosen length, rounded to float32 without going over it."""

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
