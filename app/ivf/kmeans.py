"""IVF training and assignment: streamed mini-batch k-means and nearest-centroid search.

Training never holds the whole index: pages of vectors are fed to
scikit-learn's MiniBatchKMeans.partial_fit, pass after pass, until the
centroids move less than `tolerance` in a pass (relative to the data's
variance) or `max_iters` passes are done. For the cosine metric, vectors are
normalised first, so the centroids partition directions (spherical k-means).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from sklearn.cluster import MiniBatchKMeans

from app.ivf.distance import Metric, unit_rows
from app.ivf.vectors import Matrix

Lists = npt.NDArray[np.int64]

MAX_LISTS = 65_536


def auto_n_lists(n_vectors: int) -> int:
    """Lists for an index of `n_vectors`: about 2*sqrt(N), at most N/2 and MAX_LISTS."""
    return max(1, min(MAX_LISTS, n_vectors // 2, round(2 * math.sqrt(n_vectors))))


def auto_n_probes(n_lists: int) -> int:
    """Lists to scan per query when the client leaves n_probes unset."""
    return min(n_lists, max(8, math.ceil(math.sqrt(n_lists))))


def prepare(vectors: Matrix, metric: Metric) -> Matrix:
    """Vectors as the centroids see them: unit length for cosine, unchanged otherwise."""
    return unit_rows(vectors) if metric is Metric.COSINE else vectors


class StreamingKMeans:
    """Mini-batch k-means fed page by page, with convergence checked per pass."""

    def __init__(self, n_lists: int, metric: Metric, *, batch_size: int, seed: int = 0) -> None:
        self.n_lists = n_lists
        self.metric = metric
        self._model = MiniBatchKMeans(
            n_clusters=n_lists, batch_size=batch_size, n_init=1, random_state=seed,
            reassignment_ratio=0.0,
        )
        self._pending: list[Matrix] = []
        self._pass_start: Matrix | None = None
        self._sum = np.zeros(0)
        self._sum_sq = np.zeros(0)
        self._count = 0

    @property
    def n_seen(self) -> int:
        """Vectors fed in the first pass."""
        return self._count

    @property
    def initialised(self) -> bool:
        """Whether the first batch (at least n_lists vectors) has been seen."""
        return hasattr(self._model, "cluster_centers_")

    def feed(self, vectors: Matrix) -> None:
        """Learn from one page of vectors."""
        page = prepare(vectors, self.metric)
        if self._count == 0:
            self._sum = np.zeros(page.shape[1])
            self._sum_sq = np.zeros(page.shape[1])
        if self._pass_start is None:
            self._count += len(page)
            self._sum += page.sum(axis=0, dtype=np.float64)
            self._sum_sq += np.square(page, dtype=np.float64).sum(axis=0)
        if not self.initialised:
            # k-means++ initialisation needs more points than centroids in its first batch.
            self._pending.append(page)
            if sum(len(p) for p in self._pending) < 3 * self.n_lists:
                return
            page = np.concatenate(self._pending)
            self._pending = []
        self._model.partial_fit(page)

    def end_pass(self) -> float:
        """Close a pass over the data; returns how far the centroids moved, relative to variance."""
        if self._pending:
            self._model.partial_fit(np.concatenate(self._pending))
            self._pending = []
        centers = self.centroids
        if self._pass_start is None:
            self._pass_start = centers.copy()
            return math.inf
        variance = float(np.sum(self._sum_sq / self._count - (self._sum / self._count) ** 2))
        shift = float(np.sum((centers - self._pass_start) ** 2)) / self.n_lists
        self._pass_start = centers.copy()
        return shift / variance if variance > 0 else 0.0

    @property
    def centroids(self) -> Matrix:
        """The current centroids (n_lists x dimension)."""
        return np.asarray(self._model.cluster_centers_, dtype=np.float32)


ASSIGN_CHUNK = 8192


def nearest_lists(vectors: Matrix, centroids: Matrix, metric: Metric, count: int = 1) -> Lists:
    """For each vector, the `count` nearest centroids' list numbers, nearest first.

    Works through the vectors in chunks, so the score matrix stays small.
    """
    if len(vectors) > ASSIGN_CHUNK:
        return np.concatenate([
            nearest_lists(vectors[start : start + ASSIGN_CHUNK], centroids, metric, count)
            for start in range(0, len(vectors), ASSIGN_CHUNK)
        ])
    points = prepare(vectors, metric)
    # |c|^2 - 2 p.c, built in the product's own array: each temporary of the
    # (vectors x centroids) size cost more than the product (1,000 x 316 x 128:
    # 1.6 ms with two temporaries, 0.7 ms in place).
    scores = points @ (-2.0 * centroids).T
    scores += np.einsum("ij,ij->i", centroids, centroids)
    if count == 1:
        return np.asarray(np.argmin(scores, axis=1)[:, np.newaxis], dtype=np.int64)
    count = min(count, centroids.shape[0])
    part = np.argpartition(scores, count - 1, axis=1)[:, :count]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)
    return np.asarray(np.take_along_axis(part, order, axis=1), dtype=np.int64)


def pack_centroids(centroids: Matrix) -> bytes:
    """Serialize centroids (dimension as a u32 header, then float32 rows)."""
    return np.uint32(centroids.shape[1]).tobytes() + centroids.astype("<f4").tobytes()


def unpack_centroids(data: bytes) -> Matrix:
    """Parse serialized centroids: a read-only view of `data`, not a copy (every
    search unpacks them)."""
    dimension = int(np.frombuffer(data, dtype="<u4", count=1)[0])
    rows = np.frombuffer(data, dtype="<f4", offset=4).reshape(-1, dimension)
    return rows.astype(np.float32, copy=False)
