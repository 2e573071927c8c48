"""IVF training and assignment: mini-batch k-means and nearest-centroid search.

Training feeds scikit-learn's MiniBatchKMeans.partial_fit with mini-batches
of `batch_size` vectors, pass after pass. Each mini-batch must be a random
sample of the whole index: a trained index stores its blocks grouped by
list, and batches cut from pages in that order each cover a few lists, so
the centroids chase every batch and never settle (a 1M-vector retrain ran
for 19 minutes). So a pass over vectors held in memory visits them in a
fresh random order, and pages streamed from the database go through a
shuffle buffer of several pages.

A run stops after `max_iters` passes, or at the end of a pass that moved
the centroids less than `tolerance` (mean squared shift per centroid,
relative to the data's variance), or that improved the inertia of a fixed
random sample of the vectors by less than MIN_IMPROVEMENT; a pass that made
that inertia worse is undone. A retrain can start from the previous
centroids instead of k-means++. For the cosine metric, vectors are
normalised first, so the centroids partition directions (spherical
k-means). Every choice is seeded: the same vectors in the same order give
the same centroids.

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
M (see `StreamingKMeans`). The lift exists only here: blocks hold the
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


# Vectors in the sample whose inertia tells whether a pass still helps (and
# that seeds a streamed run's centroids, which takes 3 per centroid).
SAMPLE_SIZE = 4096
# A pass that improves the sample's inertia by less than this share ends training:
# on 30,000 sentence embeddings (bench/train_speed.py's), k-means++ then stops
# after 4 passes at recall@10 0.896, where running until the centroids settle
# (31 passes, 5 to 11 times as long) gave 0.890.
MIN_IMPROVEMENT = 0.002


def sample_size(n_lists: int) -> int:
    """Vectors the first pass samples, at most: enough to seed n_lists centroids."""
    return max(SAMPLE_SIZE, 3 * n_lists)


class StreamingKMeans:
    """Mini-batch k-means over random mini-batches, with convergence checked per pass.

    A pass is either one `feed_held` call or `feed` calls for every page,
    closed by `end_pass`. `buffer_vectors` is how many fed vectors are
    shuffled together; `init` gives starting centroids (as `centroids`
    returned them) instead of k-means++; `max_norm` is the dot product's M,
    the largest norm of the vectors to be fed.
    """

    def __init__(
        self, n_lists: int, metric: Metric, *, batch_size: int, tolerance: float,
        buffer_vectors: int = 0, init: Matrix | None = None, seed: int = 0,
        max_norm: float = 0.0,
    ) -> None:
        self.n_lists = n_lists
        self.metric = metric
        self.max_norm = max_norm
        self._batch_size = batch_size
        self._tolerance = tolerance
        self._buffer_vectors = max(buffer_vectors, batch_size)
        start = None if init is None else _model_space(init, metric)
        self._model = MiniBatchKMeans(
            n_clusters=n_lists, batch_size=batch_size, n_init=1, random_state=seed,
            reassignment_ratio=0.0, compute_labels=False,
            init="k-means++" if start is None else start,
        )
        self._warm = start is not None
        self._rng = np.random.default_rng(seed)
        self._reservoir = np.zeros((0, 0), dtype=np.float32)
        self._sample: Matrix | None = None
        self._buffer: list[Matrix] = []
        self._pending: list[Matrix] = []
        self._passes = 0
        self._seen = 0
        self._pass_start = start
        self._pass_start_inertia: float | None = None
        self._sum = np.zeros(0)
        self._sum_sq = np.zeros(0)
        self._count = 0

    @property
    def n_seen(self) -> int:
        """Vectors fed in the first pass."""
        return self._seen

    @property
    def initialised(self) -> bool:
        """Whether the first batch (at least n_lists vectors) has been seen."""
        return hasattr(self._model, "cluster_centers_")

    def feed_held(self, vectors: Matrix) -> None:
        """One whole pass over vectors held in memory, in a fresh random order."""
        if self._passes == 0:
            self._seen += len(vectors)
        order = self._rng.permutation(len(vectors))
        for start in range(0, len(order), self._batch_size):
            self._fit(vectors[order[start : start + self._batch_size]])

    def feed(self, vectors: Matrix) -> None:
        """One page of a streamed pass: buffered, then learnt from in shuffled mini-batches."""
        if self._passes == 0:
            self._seen += len(vectors)
            if not self._warm:
                # Without starting centroids, the first pass only samples: k-means++
                # over a buffer of list-ordered pages would seed every centroid in
                # the few lists the buffer holds. end_pass seeds from the sample.
                self._observe(self._prepare(vectors))
                return
        self._buffer.append(vectors)
        if sum(len(page) for page in self._buffer) >= self._buffer_vectors:
            self._drain_buffer(keep_rest=True)

    def _drain_buffer(self, *, keep_rest: bool) -> None:
        held = np.concatenate(self._buffer)
        held = held[self._rng.permutation(len(held))]
        whole = len(held) - len(held) % self._batch_size if keep_rest else len(held)
        for start in range(0, whole, self._batch_size):
            self._fit(held[start : start + self._batch_size])
        # The remainder waits for the next pages, so every mini-batch is full.
        self._buffer = [held[whole:]] if whole < len(held) else []

    def _prepare(self, vectors: Matrix) -> Matrix:
        """Vectors as k-means sees them (see `prepare`)."""
        batch = prepare(vectors, self.metric, self.max_norm)
        if self.metric is Metric.DOTPRODUCT and self.max_norm > 0:
            # k-means sees the lifted vectors on the unit sphere: on the sphere
            # of radius M, k-means++ sums squared distances up to 4 M^2 each,
            # which overflows float32 once M^2 nears the vector bound.
            batch = np.asarray(batch / np.float32(self.max_norm), dtype=np.float32)
        return batch

    def _fit(self, vectors: Matrix) -> None:
        batch = self._prepare(vectors)
        if self._passes == 0:
            self._observe(batch)
        if not self.initialised:
            # k-means++ initialisation needs more points than centroids in its first batch.
            self._pending.append(batch)
            if sum(len(p) for p in self._pending) < 3 * self.n_lists:
                return
            batch = np.concatenate(self._pending)
            self._pending = []
        self._model.partial_fit(batch)

    def _observe(self, batch: Matrix) -> None:
        """First pass: the data's mean and variance, and a random sample."""
        if self._count == 0:
            self._sum = np.zeros(batch.shape[1])
            self._sum_sq = np.zeros(batch.shape[1])
        self._count += len(batch)
        self._sum += batch.sum(axis=0, dtype=np.float64)
        self._sum_sq += np.square(batch, dtype=np.float64).sum(axis=0)
        self._keep_sample(batch, seen_before=self._count - len(batch))

    def _keep_sample(self, batch: Matrix, seen_before: int) -> None:
        """Reservoir sampling: after any number of vectors, the reservoir holds a
        uniform sample of them (all of them while they are fewer than its size),
        so a run that read fewer vectors than it expected still has enough."""
        if not len(self._reservoir):
            self._reservoir = np.empty((sample_size(self.n_lists), batch.shape[1]), np.float32)
        size = len(self._reservoir)
        head = batch[: max(0, size - seen_before)]
        self._reservoir[seen_before : seen_before + len(head)] = head
        rest = batch[len(head) :]
        # The i-th vector seen replaces a random slot with probability size / i.
        ranks = np.arange(seen_before + len(head) + 1, seen_before + len(batch) + 1)
        kept = rest[self._rng.random(len(rest)) < size / ranks]
        self._reservoir[self._rng.integers(0, size, len(kept))] = kept

    def end_pass(self) -> bool:
        """Close a pass over the data; returns whether training has converged."""
        if self._buffer:
            self._drain_buffer(keep_rest=False)
        if self._pending:
            self._model.partial_fit(np.concatenate(self._pending))
            self._pending = []
        if self._sample is None:
            self._sample = self._reservoir[: self._count]
        sample = self._sample
        if not self.initialised:
            self._model.partial_fit(sample)
        self._passes += 1
        centers = np.asarray(self._model.cluster_centers_, dtype=np.float32)
        inertia = _inertia(sample, centers)
        start, start_inertia = self._pass_start, self._pass_start_inertia
        self._pass_start, self._pass_start_inertia = centers.copy(), inertia
        if start is None:
            return False
        if start_inertia is None:  # a warm start: the given centroids' inertia
            start_inertia = _inertia(sample, start)
        if inertia > start_inertia:
            # Training ends on a pass that made things worse (a warm start's first
            # pass can: the model weighs its first batch fully), and keeps the
            # centroids the pass started from.
            self._pass_start = start
            return True
        variance = float(np.sum(self._sum_sq / self._count - (self._sum / self._count) ** 2))
        shift = float(np.sum((centers - start) ** 2)) / self.n_lists
        if variance <= 0 or shift / variance <= self._tolerance:
            return True
        return start_inertia - inertia <= MIN_IMPROVEMENT * start_inertia

    @property
    def centroids(self) -> Matrix:
        """The centroids as stored (n_lists x dimension; for the dot product, see
        `mips_centroids`), as of the last pass's end that improved them."""
        centers = (self._pass_start if self._passes and self._pass_start is not None
                   else np.asarray(self._model.cluster_centers_, dtype=np.float32))
        if self.metric is Metric.DOTPRODUCT:
            scale = np.float32(self.max_norm or 1.0)
            return mips_centroids(np.asarray(centers * scale, dtype=np.float32), self.max_norm)
        return centers


def _model_space(centroids: Matrix, metric: Metric) -> Matrix:
    """Stored centroids (as `StreamingKMeans.centroids` returns them) as k-means
    sees them: for the dot product, the lifted centroids divided by their M."""
    if metric is Metric.DOTPRODUCT:
        lifted, norm = _mips_parts(centroids)
        return np.asarray(lifted / np.float32(norm or 1.0), dtype=np.float32)
    return np.asarray(centroids, dtype=np.float32)


def _inertia(sample: Matrix, centroids: Matrix) -> float:
    """Sum of squared distances from the sample's vectors to their nearest centroids."""
    total = 0.0
    squares = np.einsum("ij,ij->i", centroids, centroids)
    # 256 rows at a time keep the score matrix small even at 65,536 lists.
    for start in range(0, len(sample), 256):
        part = sample[start : start + 256]
        scores = part @ (-2.0 * centroids).T + squares
        total += float(np.sum(np.einsum("ij,ij->i", part, part) + scores.min(axis=1)))
    return total


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
    # 1.6 ms with two temporaries, 0.7 ms in place). Scaling the product rather
    # than the centroids spares a copy of them, most of the cost for a few
    # vectors (10 x 316 x 384: 0.13 -> 0.10 ms).
    scores = points @ centers.T
    scores *= -2.0
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
