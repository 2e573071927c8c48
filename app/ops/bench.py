"""`ciphervec bench`: a quick throughput check of this installation's service layer
and database (upsert, train, single queries), without HTTP or a client.

It measures what the service itself costs on this machine and database; the
side-by-side comparison with the reference service through the official
client is bench/run.py (`make bench`), which imports `clustered_dataset` from
here so both use the same data.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_blobs

from app.ivf.distance import Metric
from app.ivf.vectors import Matrix
from app.services import indexes, search, training
from app.services import vectors as vector_service
from app.services.context import ServiceContext

BENCH_TENANT = "ciphervec-bench"


def clustered_dataset(
    n: int, dimension: int, queries: int, seed: int = 0
) -> tuple[Matrix, Matrix]:
    """Clustered float32 vectors plus held-out queries from the same clusters."""
    points, _ = make_blobs(n + queries, dimension, centers=max(10, n // 500), cluster_std=4.0,
                           center_box=(-20, 20), random_state=seed)
    points = points.astype(np.float32)
    return points[:n], points[n:]


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Throughput and latency figures of one run."""

    vectors: int
    dimension: int
    upsert_vectors_per_s: float
    train_s: float
    n_lists: int
    query_p50_ms: float
    query_p95_ms: float


async def run_bench(
    ctx: ServiceContext, *, n: int, dimension: int, queries: int, batch_size: int, top_k: int
) -> BenchResult:
    """Upsert `n` vectors into a throwaway index, train it, run `queries` single queries,
    then delete the index."""
    vectors, probes = clustered_dataset(n, dimension, queries)
    name = f"bench-{secrets.token_hex(6)}"
    key = secrets.token_bytes(32)
    spec = indexes.IndexSpec(
        name=name, index_key=key, kms_name=None, dimension=dimension, metric=Metric.EUCLIDEAN,
        embedding_model=None, metadata_schema=None,
    )
    await indexes.create_index(ctx, BENCH_TENANT, spec)
    try:
        start = time.perf_counter()
        for begin in range(0, n, batch_size):
            rows = vectors[begin : begin + batch_size]
            ids = [str(i) for i in range(begin, begin + len(rows))]
            batch = vector_service.ItemBatch(ids, rows, [None] * len(ids), [None] * len(ids))
            await vector_service.upsert(ctx, BENCH_TENANT, name, key, batch)
        upsert_s = time.perf_counter() - start

        start = time.perf_counter()
        trained = await training.train(ctx, BENCH_TENANT, name, key, training.TrainParams())
        train_s = time.perf_counter() - start

        latencies = []
        for row in probes:
            spec_q = search.QuerySpec(vectors=row[None, :], top_k=top_k)
            start = time.perf_counter()
            await search.query(ctx, BENCH_TENANT, name, key, spec_q)
            latencies.append(time.perf_counter() - start)
    finally:
        await indexes.delete_index(ctx, BENCH_TENANT, name, key)
    p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95]) if latencies else (0.0, 0.0)
    return BenchResult(
        vectors=n, dimension=dimension, upsert_vectors_per_s=n / upsert_s, train_s=train_s,
        n_lists=trained.n_lists, query_p50_ms=float(p50), query_p95_ms=float(p95),
    )
