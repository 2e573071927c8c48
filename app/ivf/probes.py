"""How many lists a query probes when the client leaves n_probes unset, measured on the data.

A fixed rule (about sqrt(n_lists)) suits vectors that fall into well-separated
clusters, where a query's neighbours share its nearest list or two. Sentence
embeddings are not like that: 25,000 MiniLM vectors of real prose in 316 lists
needed 48 probes for recall@10 0.95 where the rule gave 18 (recall 0.87); the
estimate below says 69 from a sample of 12,000 (0.35 s), capped to 54.
So a training run measures it: vectors sampled from the index act as
queries against the sample, and the count is the fewest nearest lists that
hold the lists of their exact nearest neighbours `TARGET` of the time.

The sample holds a fraction f of the index, so the k-th neighbour within it
stands for about the (k/f)-th in the whole index: the sample's neighbours are
asked for k*f of them (at least one), which still leaves them at least as far
as the true ones, and the estimate errs towards more probes. It never goes
below the fixed rule (queries in use may differ from the stored vectors) and
never above FACTOR_CAP times it, which bounds the cost of a query.
"""

from __future__ import annotations

import numpy as np

from app.ivf.distance import Metric, scan_scores
from app.ivf.kmeans import auto_n_probes, nearest_lists, probe_lists
from app.ivf.vectors import Matrix

# Share of neighbours whose list the probes must reach (recall@10 ~ 0.95,
# with a margin for queries that are not stored vectors).
TARGET = 0.96
FACTOR_CAP = 3
# Sample vectors used as queries, and the neighbours asked of the whole index.
SAMPLE_QUERIES = 1024
NEIGHBOURS = 10


def measured_n_probes(
    sample: Matrix, centroids: Matrix, metric: Metric, n_indexed: int
) -> int:
    """The probes a query needs on an index of `n_indexed` vectors, from a random
    `sample` of them (see the module docstring)."""
    n_lists = len(centroids)
    floor = auto_n_probes(n_lists, metric)
    if len(sample) <= SAMPLE_QUERIES or n_lists <= floor:
        return floor
    k = max(1, round(NEIGHBOURS * len(sample) / max(n_indexed, len(sample))))
    queries = sample[:SAMPLE_QUERIES]
    scores = scan_scores(queries, sample, metric)
    rows = np.arange(len(queries))
    scores[rows, rows] = np.inf  # a query is not its own neighbour
    neighbours = np.argpartition(scores, k - 1, axis=1)[:, :k]
    home = nearest_lists(sample, centroids, metric)[:, 0]
    ranking = probe_lists(queries, centroids, metric, n_lists)
    rank_of = np.empty_like(ranking)
    np.put_along_axis(rank_of, ranking, np.arange(n_lists)[np.newaxis, :], axis=1)
    needed = np.take_along_axis(rank_of, home[neighbours], axis=1).ravel()
    probes = int(np.quantile(needed, TARGET, method="higher")) + 1
    return min(n_lists, max(floor, min(probes, FACTOR_CAP * floor)))
