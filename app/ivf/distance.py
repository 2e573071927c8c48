"""Distance metrics and the exact top-k kernels used by every search.

Scanning uses a cheap score that orders candidates like the true distance
(`|v|^2 - 2 q.v` for the Euclidean family, `-cos` for cosine) computed in
float32 with one matrix product; the short list is then re-ranked with the
true distance in float64, so reported distances and order match a brute-force
numpy computation.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

from app.ivf.vectors import Matrix

Scores = npt.NDArray[np.float32]
Distances = npt.NDArray[np.float64]
Positions = npt.NDArray[np.intp]


class Metric(StrEnum):
    """Distance metrics, named as the CyborgDB API names them; smaller is closer."""

    EUCLIDEAN = "euclidean"
    SQUARED_EUCLIDEAN = "squared_euclidean"
    COSINE = "cosine"


def _unit_rows(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(matrix / norms, dtype=np.float32)


def scan_scores(queries: Matrix, vectors: Matrix, metric: Metric) -> Scores:
    """A (queries x vectors) matrix of scores ordered like the metric's distance."""
    if metric is Metric.COSINE:
        scores = -(_unit_rows(queries) @ _unit_rows(vectors).T)
    else:
        sq_norms = np.einsum("ij,ij->i", vectors, vectors)
        scores = sq_norms[np.newaxis, :] - 2.0 * (queries @ vectors.T)
    return np.asarray(scores, dtype=np.float32)


def exact_distances(query: Matrix, vectors: Matrix, metric: Metric) -> Distances:
    """True distances in float64 from one query (1-d) to each row of `vectors`."""
    q = query.astype(np.float64)
    v = vectors.astype(np.float64)
    if metric is Metric.COSINE:
        norms = np.linalg.norm(v, axis=1) * np.linalg.norm(q)
        dots = v @ q
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
        return np.asarray(1.0 - cos, dtype=np.float64)
    diff = v - q
    squared = np.einsum("ij,ij->i", diff, diff)
    if metric is Metric.SQUARED_EUCLIDEAN:
        return np.asarray(squared, dtype=np.float64)
    return np.asarray(np.sqrt(squared), dtype=np.float64)


def smallest(scores: Scores, count: int) -> Positions:
    """Positions of the `count` smallest scores, in ascending order of score."""
    n = scores.shape[0]
    if count >= n:
        return np.argsort(scores, kind="stable")
    part = np.argpartition(scores, count)[:count]
    return part[np.argsort(scores[part], kind="stable")]
