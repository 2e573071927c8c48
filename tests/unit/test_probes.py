"""The auto n_probes a training run measures: the fixed rule on clustered data, more
probes where neighbours spread over many lists, enough for recall 0.95, bounded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from app.ivf.distance import Metric, scan_scores
from app.ivf.kmeans import auto_n_probes, nearest_lists, probe_lists
from app.ivf.probes import FACTOR_CAP, measured_n_probes


def _centroids(vectors: np.ndarray, n_lists: int) -> np.ndarray:
    km = KMeans(n_lists, n_init=1, max_iter=20, random_state=0).fit(vectors)
    centroids: np.ndarray = km.cluster_centers_.astype(np.float32)
    return centroids


def _recall(vectors: np.ndarray, queries: np.ndarray, centroids: np.ndarray, probes: int) -> float:
    home = nearest_lists(vectors, centroids, Metric.EUCLIDEAN)[:, 0]
    exact = np.argsort(scan_scores(queries, vectors, Metric.EUCLIDEAN), axis=1)[:, :10]
    chosen = probe_lists(queries, centroids, Metric.EUCLIDEAN, probes)
    found = [np.isin(home[row], lists).mean() for row, lists in zip(exact, chosen, strict=True)]
    return float(np.mean(found))


def test_clustered_vectors_keep_the_fixed_rule() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 16)).astype(np.float32) * 20
    vectors = (centres[rng.integers(0, 40, 6_000)] + rng.normal(size=(6_000, 16))).astype(
        np.float32
    )
    centroids = _centroids(vectors, 150)
    assert measured_n_probes(vectors, centroids, Metric.EUCLIDEAN, 6_000) == auto_n_probes(
        150, Metric.EUCLIDEAN
    )


@pytest.fixture(scope="module")
def diffuse() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian noise in 12 dimensions, no clusters: a query's neighbours spread over
    several lists."""
    points = np.random.default_rng(2).normal(size=(8_500, 12)).astype(np.float32)
    vectors, queries = points[:8_000], points[8_000:]
    return vectors, queries, _centroids(vectors, 178)


def test_diffuse_vectors_get_more_probes_than_the_fixed_rule_within_the_cap(
    diffuse: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    vectors, _, centroids = diffuse
    fixed = auto_n_probes(len(centroids), Metric.EUCLIDEAN)
    measured = measured_n_probes(vectors, centroids, Metric.EUCLIDEAN, len(vectors))
    assert fixed < measured <= FACTOR_CAP * fixed
    assert _recall(vectors, diffuse[1], centroids, fixed) < 0.95


def test_the_measured_probes_reach_recall_095_on_fresh_queries_from_a_sample(
    diffuse: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    vectors, queries, centroids = diffuse
    sample = vectors[np.random.default_rng(3).permutation(len(vectors))[:3_000]]
    measured = measured_n_probes(sample, centroids, Metric.EUCLIDEAN, len(vectors))
    assert _recall(vectors, queries, centroids, measured) >= 0.95
