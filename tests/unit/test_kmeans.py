"""Mini-batch k-means as training runs it: random mini-batches whatever the input order,
stopping rules, warm start, determinism."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_blobs

from app.ivf.distance import Metric
from app.ivf.kmeans import StreamingKMeans, largest_norm
from app.ivf.vectors import Matrix

CENTERS = 20


def _list_ordered(n: int = 20_000, seed: int = 0) -> tuple[Matrix, Matrix]:
    """Well-separated clusters, sorted by cluster as a trained index stores them; and
    the true centers."""
    vectors, labels, centers = make_blobs(n, 16, centers=CENTERS, cluster_std=1.0,
                                          center_box=(-50, 50), random_state=seed,
                                          return_centers=True)
    order = np.argsort(labels, kind="stable")
    return vectors[order].astype(np.float32), np.asarray(centers, dtype=np.float32)


def _kmeans(*, tolerance: float = 1e-6, buffer_vectors: int = 0,
            init: Matrix | None = None) -> StreamingKMeans:
    return StreamingKMeans(CENTERS, Metric.EUCLIDEAN, batch_size=256, tolerance=tolerance,
                           buffer_vectors=buffer_vectors, init=init)


def _train_held(kmeans: StreamingKMeans, vectors: Matrix, max_iters: int = 100) -> int:
    for passes in range(1, max_iters + 1):
        kmeans.feed_held(vectors)
        if kmeans.end_pass():
            return passes
    return max_iters


def _train_streamed(kmeans: StreamingKMeans, vectors: Matrix, page: int,
                    max_iters: int = 100) -> int:
    for passes in range(1, max_iters + 1):
        for start in range(0, len(vectors), page):
            kmeans.feed(vectors[start : start + page])
        if kmeans.end_pass():
            return passes
    return max_iters


def _worst_miss(centroids: Matrix, centers: Matrix) -> float:
    """How far the true center farthest from every centroid is from its nearest one."""
    distances = np.linalg.norm(centers[:, None, :] - centroids[None], axis=2)
    return float(distances.min(axis=1).max())


def test_list_ordered_vectors_held_in_memory_give_the_true_centers() -> None:
    vectors, centers = _list_ordered()
    kmeans = _kmeans()
    _train_held(kmeans, vectors)
    assert _worst_miss(kmeans.centroids, centers) < 0.5


def test_list_ordered_pages_through_a_shuffle_buffer_give_the_true_centers() -> None:
    vectors, centers = _list_ordered()
    kmeans = _kmeans(buffer_vectors=5000)
    _train_streamed(kmeans, vectors, page=1000)
    assert _worst_miss(kmeans.centroids, centers) < 0.5


def test_training_stops_when_a_pass_no_longer_improves_the_sample_inertia() -> None:
    vectors, _ = _list_ordered()
    # A tolerance of 0 never stops training by itself: only the inertia rule can.
    passes = _train_held(_kmeans(tolerance=0.0), vectors)
    assert passes < 10


def test_a_warm_start_begins_from_the_given_centroids() -> None:
    vectors, centers = _list_ordered()
    # k-means++ would number the lists in an order of its own; a warm start
    # keeps list i at the centroid it was given as i.
    kmeans = _kmeans(init=centers + 0.3)
    _train_held(kmeans, vectors)
    nearest = np.linalg.norm(kmeans.centroids[:, None] - centers[None], axis=2).argmin(axis=1)
    assert nearest.tolist() == list(range(CENTERS))


def test_a_warm_start_from_settled_centroids_ends_after_one_pass() -> None:
    vectors, _ = _list_ordered()
    settled = _kmeans()
    _train_held(settled, vectors)
    assert _train_held(_kmeans(init=settled.centroids), vectors) == 1


def test_the_same_vectors_give_the_same_centroids() -> None:
    vectors, _ = _list_ordered()
    first, second = _kmeans(), _kmeans()
    _train_held(first, vectors)
    _train_held(second, vectors)
    assert np.array_equal(first.centroids, second.centroids)


def test_cosine_centroids_partition_directions() -> None:
    vectors, centers = _list_ordered()
    kmeans = StreamingKMeans(CENTERS, Metric.COSINE, batch_size=256, tolerance=1e-6)
    _train_held(kmeans, vectors * 3)
    units = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    assert _worst_miss(kmeans.centroids, units) < 0.05


def test_a_warm_start_never_ends_worse_than_the_centroids_it_was_given() -> None:
    # Close clusters, where a warm start's first pass lands slightly worse than
    # where it started; 3,000 vectors, so the inertia sample holds them all.
    blobs, _ = make_blobs(3000, 16, centers=CENTERS, cluster_std=1.0, random_state=0)
    vectors = np.asarray(blobs, dtype=np.float32)
    settled = _kmeans()
    _train_held(settled, vectors)
    retrained = _kmeans(init=settled.centroids)
    _train_held(retrained, vectors)
    assert _sse(vectors, retrained.centroids) <= _sse(vectors, settled.centroids)


def _sse(vectors: Matrix, centroids: Matrix) -> float:
    distances = ((vectors[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return float(distances.min(axis=1).sum())


def test_a_dot_product_warm_start_begins_from_the_stored_centroids() -> None:
    vectors, _ = _list_ordered()
    norm = largest_norm(vectors)
    settled = StreamingKMeans(CENTERS, Metric.DOTPRODUCT, batch_size=256, tolerance=1e-6,
                              max_norm=norm)
    _train_held(settled, vectors)
    retrained = StreamingKMeans(CENTERS, Metric.DOTPRODUCT, batch_size=256, tolerance=1e-6,
                                max_norm=norm, init=settled.centroids)
    assert _train_held(retrained, vectors) == 1
    assert np.allclose(retrained.centroids, settled.centroids, atol=0.5)
