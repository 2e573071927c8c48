"""Recall@10 and query time of the dotproduct metric at auto n_probes, through the
official client against ciphervec (its own process, an embedded PostgreSQL).

Workloads:

- `sentences` (default): all-MiniLM-L6-v2 embeddings of N + Q distinct generated
  sentences (tests/support/corpus.py), each scaled by a random factor in
  [0.5, 2]. The model's own outputs are unit length (its pipeline ends in a
  Normalize layer), and on unit vectors the dot product ranks like cosine:
  the scaling makes the lengths vary 4x, which is what the metric is for.
- `realtext`: the same scaling of the real-data corpus of bench/real_text.py
  (28,200 English sentences from installed docstrings, embedded once and
  cached in bench/.data/; `python -m bench.real_text` builds the cache).
- `varied`: clustered synthetic vectors whose lengths spread over 0.1-10
  (tests/support/vectors.py, `varied_norms`). With `--foreign-queries` the
  queries come from other cluster centres than the data (directions the
  index holds few vectors near), a harder case.

The last Q rows are held out as queries. The index is created with metric
"dotproduct", filled 1,000 at a time, trained with every parameter left to
its default, then queried one vector at a time with top_k=10 and n_probes
unset (auto: twice what the other metrics probe, see app/ivf/kmeans.py), and
again at the other metrics' auto n_probes. Truth is numpy's exact
inner product in float64. Results go to bench/results/dotproduct-<workload>.json.

    python -m bench.dotproduct                          # 20,000 sentences + 500 queries
    python -m bench.dotproduct --workload realtext --n 25000
    python -m bench.dotproduct --workload varied --n 50000 --dim 128
    python -m bench.dotproduct --save-embeddings e.npy  # keep the embeddings (about 10 min
    python -m bench.dotproduct --embeddings e.npy       # to compute on 2 busy cores)
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from cyborgdb import Client

from app.ivf.distance import Metric
from app.ivf.kmeans import auto_n_probes
from bench.run import RESULTS, ciphervec_server
from tests.support.vectors import varied_norms

TOP_K = 10
# The corpus size bench/real_text.py embeds and caches by default (25,000 +
# 3,000 live + 200 queries); a smaller corpus is a prefix of it.
REAL_TEXT_SENTENCES = 28_200


def sentence_vectors(n: int, embeddings: Path | None, save: Path | None) -> np.ndarray:
    """`n` MiniLM embeddings, each scaled by a seeded random factor in [0.5, 2]."""
    if embeddings is not None:
        unit = np.load(embeddings)[:n]
    else:
        from app.embeddings import DEFAULT_MODEL, embed_texts  # noqa: PLC0415 - optional extra
        from tests.support.corpus import generated_sentences  # noqa: PLC0415

        started = time.perf_counter()
        unit = embed_texts(DEFAULT_MODEL.name, generated_sentences(n, seed=2))
        print(f"embedded {n} sentences in {time.perf_counter() - started:.0f} s", flush=True)
        if save is not None:
            np.save(save, unit)
    if len(unit) < n:
        raise SystemExit(f"{len(unit)} embeddings given, {n} needed")
    scale = np.random.default_rng(0).uniform(0.5, 2.0, size=(n, 1))
    return np.asarray(unit * scale, dtype=np.float32)


def real_text_vectors(n: int) -> np.ndarray:
    """The first `n` sentences of bench/real_text.py's corpus (a fixed shuffle),
    each scaled by a seeded random factor in [0.5, 2]."""
    from bench.real_text import embedded_corpus  # noqa: PLC0415 - walks installed sources

    _, unit = embedded_corpus(REAL_TEXT_SENTENCES)
    if n > len(unit):
        raise SystemExit(f"the real-text corpus has {len(unit):,} sentences, {n:,} needed")
    scale = np.random.default_rng(0).uniform(0.5, 2.0, size=(n, 1))
    return np.asarray(unit[:n] * scale, dtype=np.float32)


def measure(base: str, api_key: str, vectors: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Fill, train and query one dotproduct index; recall and latencies."""
    client = Client(base, api_key=api_key)
    name, index_key = f"dot-{secrets.token_hex(4)}", secrets.token_bytes(32)
    index = client.create_index(index_name=name, dimension=vectors.shape[1],
                                index_key=index_key, metric="dotproduct")
    ids = [str(i) for i in range(len(vectors))]
    for start in range(0, len(vectors), 1000):
        index.upsert(ids[start : start + 1000], vectors[start : start + 1000])
    started = time.perf_counter()
    index.train()
    train_s = time.perf_counter() - started
    n_lists = client.load_index(name, index_key=index_key).n_lists
    truth = np.argsort(-(queries.astype(np.float64) @ vectors.astype(np.float64).T),
                       axis=1)[:, :TOP_K]
    result: dict[str, Any] = {"n_lists": n_lists, "train_s": round(train_s, 2)}
    auto = auto_n_probes(n_lists, Metric.DOTPRODUCT)
    others = auto_n_probes(n_lists, Metric.EUCLIDEAN)
    for label, n_probes in (("auto", None), ("other_metrics_auto", others)):
        latencies, recalls = [], []
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = index.query(query_vectors=query.tolist(), top_k=TOP_K, n_probes=n_probes)
            latencies.append((time.perf_counter() - started) * 1000)
            found = {int(hit["id"]) for hit in hits}
            recalls.append(len(found & set(expected.tolist())) / TOP_K)
        result[label] = {
            "n_probes": n_probes or auto,
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "query_p95_ms": round(float(np.percentile(latencies, 95)), 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=["sentences", "realtext", "varied"],
                        default="sentences")
    parser.add_argument("--n", type=int, default=20_000, help="vectors indexed")
    parser.add_argument("--queries", type=int, default=500, help="held-out query vectors")
    parser.add_argument("--dim", type=int, default=128, help="dimension (varied only)")
    parser.add_argument("--foreign-queries", action="store_true",
                        help="varied: queries around other cluster centres than the data")
    parser.add_argument("--embeddings", type=Path, help="unit embeddings saved earlier (.npy)")
    parser.add_argument("--save-embeddings", type=Path)
    args = parser.parse_args()
    total = args.n + args.queries
    if args.workload == "sentences":
        rows = sentence_vectors(total, args.embeddings, args.save_embeddings)
    elif args.workload == "realtext":
        rows = real_text_vectors(total)
    else:
        rows = varied_norms(total, args.dim)
    vectors, queries = rows[: args.n], rows[args.n :]
    if args.workload == "varied" and args.foreign_queries:
        queries = varied_norms(args.queries, args.dim, seed=1)
    norms = np.linalg.norm(vectors, axis=1)
    workdir = Path(tempfile.mkdtemp(prefix="ciphervec-dot-"))
    workdir.chmod(0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
    try:
        with ciphervec_server(workdir) as (base, key, _, _):
            result = measure(base, key, vectors, queries)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "workload": {"kind": args.workload, "foreign_queries": args.foreign_queries,
                     "n": args.n, "queries": args.queries,
                     "dimension": int(vectors.shape[1]), "top_k": TOP_K,
                     "norm_min_max": [round(float(norms.min()), 3), round(float(norms.max()), 3)]},
        "results": result,
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-foreign-queries" if args.foreign_queries else ""
    path = RESULTS / f"dotproduct-{args.workload}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
