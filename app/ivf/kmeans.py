"""IVF training and assignment: streamed mini-batch k-means and nearest-centroid search.

Training never holds the whole index: pages of vectors are fed to
scikit-learn's MiniBatchKMeans.partial_fit, pass after pass, until the
centroids move less than `tolerance` in a pass (relative to the data's
variance) or `max_iters` passes are done. For the cosine metric, vectors are
normalised first, so the centroids partition directions (spherical k-means).

The dot product is reduced to nearest neighbours (Bachrach et al., 2014): with
M the largest norm among the training vectors, a stored vector x is lifted to
x' = [x, sqrt(M^2 - |x|^2)], onto the sphere of radius M, and a query q to
q' = [M q/|q|, 0], onto the same sphere. Then |q' - x'|^2 = 2 M^2 - 2 M q.x/|q|:
the nearest lifted vectors are those of largest inner product, so k-means,
assignment and probing all work on lifted vectors with the Euclidean distance.
A vector longer than M (written after training) is lifted with 0: it lands in
the list of its nearest lifted centroid, which favours centroids pointing its
way as the probes of the queries it answers best do; lists grow less balanced
until the next training computes M again.

Assignment needs M, so a dot product index's centroid matrix has two more
columns than its vectors: the lifted centroid, then M, repeated in every row
(see `mips_centroids`). k-means itself works on the lifted vectors divided by
M (see `StreamingKMeans.feed`). The lift exists only here: blocks hold the
vectors as the client sent them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

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


# Under the dot product the lift (see the module docstring) gathers short
# vectors in lists that queries seldom probe, so a probe scans about half as
# many vectors as under the other metrics (20,000 MiniLM embeddings of
# generated sentences, 283 lists, 17 probes: 3.2% of the vectors scanned,
# scaled by 0.5-2 under dotproduct, 6.0% unscaled under cosine). Twice the
# probes scan about the same share; recall@10 rose from 0.958 to 0.990 there,
# and from 0.805 to 0.894 on the real prose of bench/real_text.py.
_DOT_PROBE_FACTOR = 2


def auto_n_probes(n_lists: int, metric: Metric) -> int:
    """Lists to scan per query when the client leaves n_probes unset."""
    probes = max(8, math.ceil(math.sqrt(n_lists)))
    if metric is Metric.DOTPRODUCT:
        probes *= _DOT_PROBE_FACTOR
    return min(n_lists, probes)


def prepare(vectors: Matrix, metric: Metric, max_norm: float = 0.0) -> Matrix:
    """Stored vectors as k-means sees them: unit length for cosine, lifted by
    `max_norm` for the dot product, unchanged otherwise."""
    if metric is Metric.COSINE:
        return unit_rows(vectors)
    if metric is Metric.DOTPRODUCT:
        return lift_vectors(vectors, max_norm)
    return vectors


def largest_norm(vectors: Matrix) -> float:
    """The largest L2 norm among the rows (0 for none), computed in float64."""
    if not len(vectors):
        return 0.0
    return float(np.sqrt(np.max(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))))


def lift_vectors(vectors: Matrix, max_norm: float) -> Matrix:
    """Stored vectors with the coordinate sqrt(M^2 - |x|^2) appended (0 when |x| > M)."""
    squared = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    extra = np.sqrt(np.maximum(max_norm * max_norm - squared, 0.0))
    return np.hstack([vectors, extra[:, np.newaxis].astype(np.float32)])


def lift_queries(queries: Matrix, max_norm: float) -> Matrix:
    """Queries scaled to length M with 0 appended; a query's length does not change
    its ranking, so it does not change the lists it probes either."""
    scaled = np.asarray(unit_rows(queries) * np.float32(max_norm), dtype=np.float32)
    return np.hstack([scaled, np.zeros((len(queries), 1), dtype=np.float32)])


def mips_centroids(lifted: Matrix, max_norm: float) -> Matrix:
    """A dot product index's stored centroids: the lifted centroids and a column of M."""
    column = np.full((len(lifted), 1), max_norm, dtype=np.float32)
    return np.hstack([lifted.astype(np.float32), column])


def _mips_parts(centroids: Matrix) -> tuple[Matrix, float]:
    """The lifted centroids and M of a dot product index's centroid matrix."""
    return centroids[:, :-1], float(centroids[0, -1])


class StreamingKMeans:
    """Mini-batch k-means fed page by page, with convergence checked per pass."""

    def __init__(
        self, n_lists: int, metric: Metric, *, batch_size: int, seed: int = 0,
        max_norm: float = 0.0,
    ) -> None:
        """`max_norm` is the dot product's M, the largest norm of the vectors to be fed."""
        self.n_lists = n_lists
        self.metric = metric
        self.max_norm = max_norm
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
        page = prepare(vectors, self.metric, self.max_norm)
        if self.metric is Metric.DOTPRODUCT and self.max_norm > 0:
            # k-means sees the lifted vectors on the unit sphere: on the sphere
            # of radius M, k-means++ sums squared distances up to 4 M^2 each,
            # which overflows float32 once M^2 nears the vector bound.
            page = np.asarray(page / np.float32(self.max_norm), dtype=np.float32)
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
        centers = np.asarray(self._model.cluster_centers_, dtype=np.float32)
        if self._pass_start is None:
            self._pass_start = centers.copy()
            return math.inf
        variance = float(np.sum(self._sum_sq / self._count - (self._sum / self._count) ** 2))
        shift = float(np.sum((centers - self._pass_start) ** 2)) / self.n_lists
        self._pass_start = centers.copy()
        return shift / variance if variance > 0 else 0.0

    @property
    def centroids(self) -> Matrix:
        """The current centroids as stored (n_lists x dimension; for the dot product,
        see `mips_centroids`)."""
        centers = np.asarray(self._model.cluster_centers_, dtype=np.float32)
        if self.metric is Metric.DOTPRODUCT:
            scale = np.float32(self.max_norm or 1.0)
            return mips_centroids(np.asarray(centers * scale, dtype=np.float32), self.max_norm)
        return centers


ASSIGN_CHUNK = 8192


def nearest_lists(vectors: Matrix, centroids: Matrix, metric: Metric, count: int = 1) -> Lists:
    """For each stored vector, the `count` nearest centroids' list numbers, nearest first."""
    if metric is Metric.DOTPRODUCT:
        centers, norm = _mips_parts(centroids)
        return _nearest(vectors, centers, count, partial(lift_vectors, max_norm=norm))
    return _nearest(vectors, centroids, count, partial(prepare, metric=metric))


def probe_lists(queries: Matrix, centroids: Matrix, metric: Metric, count: int) -> Lists:
    """For each query, the `count` lists to scan, nearest first."""
    if metric is Metric.DOTPRODUCT:
        centers, norm = _mips_parts(centroids)
        return _nearest(queries, centers, count, partial(lift_queries, max_norm=norm))
    return nearest_lists(queries, centroids, metric, count)


def _nearest(
    vectors: Matrix, centers: Matrix, count: int, lift: Callable[[Matrix], Matrix]
) -> Lists:
    """The `count` centers nearest (Euclidean) to each lifted vector, nearest first.

    Works through the vectors in chunks, so the score matrix stays small.
    """
    if len(vectors) > ASSIGN_CHUNK:
        return np.concatenate([
            _nearest(vectors[start : start + ASSIGN_CHUNK], centers, count, lift)
            for start in range(0, len(vectors), ASSIGN_CHUNK)
        ])
    points = lift(vectors)
    # |c|^2 - 2 p.c, built in the product's own array: each temporary of the
    # (vectors x centroids) size cost more than the product (1,000 x 316 x 128:
    # 1.6 ms with two temporaries, 0.7 ms in place).
    scores = points @ (-2.0 * centers).T
    scores += np.einsum("ij,ij->i", centers, centers)
    if count == 1:
        return np.asarray(np.argmin(scores, axis=1)[:, np.newaxis], dtype=np.int64)
    count = min(count, centers.shape[0])
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
