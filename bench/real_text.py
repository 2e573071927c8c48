"""Real-text benchmark: ciphervec vs cyborgdb-service 0.18 on sentence embeddings,
both services on their defaults, through the official client.

Corpus: English sentences from the docstrings of the Python standard library
and of large, well-documented packages installed beside it (numpy, scipy,
scikit-learn, SQLAlchemy, pydantic, torch, transformers, ...), real prose
written by people, available offline; deduplicated, shuffled with a fixed
seed. They are embedded once with the shipped all-MiniLM-L6-v2 model and
cached under bench/.data/ (keyed by the corpus size and the sentences' hash).

Workload, per system on fresh storage: N items upserted in batches of 1,000
(auto-training on, as users get it), one explicit train, then for each
n_probes (auto first) 200 held-out sentences as queries (top_k 10): p50/p95 ms
and recall@10 against exact search. Then the live phase: LIVE more items in
upserts of 10, one query after each (upsert p50, query p50 overall and over
the last 100), and recall@10 at the auto n_probes afterwards, against exact
search over everything stored. Writes bench/results/real-text-<N>.json.

`--systems pgvector` adds plaintext pgvector (HNSW and ivfflat, direct SQL,
no live phase) on the same base vectors, queries and ground truth: see
bench/pgvector_queries.py. Systems not run keep their earlier results in the
report, when its workload is the same (listed under "carried_over").

    python -m bench.real_text                    # 25,000 items, all three systems
    python -m bench.real_text --systems ciphervec --n 10000
    python -m bench.real_text --systems pgvector # plaintext pgvector alone
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from cyborgdb import Client

from bench.run import RESULTS, ROOT, ciphervec_server, live_phase, reference_server

DATA = ROOT / "bench" / ".data"
# Packages whose docstrings join the standard library's, when installed.
PACKAGES = ("numpy", "scipy", "sklearn", "sqlalchemy", "pydantic", "torch", "transformers",
            "hypothesis", "alembic", "cryptography", "matplotlib")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Code, markup and identifiers: such sentences are not prose.
_NOT_PROSE = re.compile(r"[{}<>=\[\]`|\\]|::|>>>|\w\(\)|_\w")
N_PROBES = (None, 1, 2, 4, 8, 16, 32, 64, 128)
SYSTEMS = ("ciphervec", "reference", "pgvector")
# What must match for an earlier report's results to stand beside a new run's.
SAME_WORKLOAD = ("n", "live", "queries", "top_k", "model", "metric", "corpus_sentences")


def _source_roots() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    return [stdlib, *(site / name for name in PACKAGES if (site / name).is_dir())]


def _docstring_sentences(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for paragraph in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
            for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                if (40 <= len(sentence) <= 300 and sentence[0].isupper()
                        and sentence[-1] in ".!?" and not _NOT_PROSE.search(sentence)):
                    yield sentence


def corpus(size: int) -> list[str]:
    """`size` distinct prose sentences, in a fixed shuffled order."""
    skipped = {"test", "tests", "site-packages", "idlelib", "lib2to3"}
    sentences: set[str] = set()
    for root in _source_roots():
        for path in sorted(root.rglob("*.py")):
            if not skipped & set(path.relative_to(root).parts):
                sentences.update(_docstring_sentences(path))
    ordered = sorted(sentences)
    if len(ordered) < size:
        raise SystemExit(f"only {len(ordered):,} sentences found, {size:,} needed")
    order = np.random.default_rng(0).permutation(len(ordered))[:size]
    return [ordered[i] for i in order]


def embedded_corpus(size: int) -> tuple[list[str], np.ndarray]:
    """The corpus and its MiniLM vectors, embedded once and cached."""
    texts = corpus(size)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    cache = DATA / f"real-text-{size}-{digest}.npy"
    if cache.exists():
        return texts, np.load(cache)
    sys.path.insert(0, str(ROOT))
    from app.embeddings import DEFAULT_MODEL, embed_texts  # noqa: PLC0415 - optional extra

    print(f"embedding {size:,} sentences with {DEFAULT_MODEL.name} ...", flush=True)
    vectors = np.concatenate([
        embed_texts(DEFAULT_MODEL.name, texts[start : start + 1024])
        for start in range(0, size, 1024)
    ]).astype(np.float32)
    DATA.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return texts, vectors


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each query's k nearest rows by cosine, by brute force."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    return np.argsort(-scores, axis=1)[:, :k]


def _ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)), 2)


def _query_pass(index: Any, queries: np.ndarray, truth: np.ndarray, n_probes: int | None,
                top_k: int) -> dict[str, Any]:
    latencies, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        hits = index.query(query_vectors=query.tolist(), top_k=top_k, n_probes=n_probes)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({int(h["id"]) for h in hits} & set(expected.tolist())) / top_k)
    return {"n_probes": n_probes or "auto", "query_p50_ms": _ms(latencies, 50),
            "query_p95_ms": _ms(latencies, 95), "recall_at_10": round(float(np.mean(recalls)), 4)}


def workload(base: str, api_key: str | None, vectors: np.ndarray, queries: np.ndarray,
             n: int, live: int, top_k: int) -> dict[str, Any]:
    """Bulk load, train, the n_probes curve, the live phase, recall after it."""
    index = Client(base, api_key=api_key).create_index(
        f"real-{secrets.token_hex(4)}", index_key=secrets.token_bytes(32),
        dimension=vectors.shape[1], metric="cosine",
    )
    started = time.perf_counter()
    for start in range(0, n, 1_000):
        stop = min(start + 1_000, n)
        index.upsert([str(i) for i in range(start, stop)], vectors[start:stop])
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    index.train()
    train_s = time.perf_counter() - started

    truth = exact_top(vectors[:n], queries, top_k)
    curve = [_query_pass(index, queries, truth, p, top_k) for p in N_PROBES]

    live_result = live_phase(index, [str(i) for i in range(n, n + live)], vectors[n : n + live],
                             queries, top_k)
    after = _query_pass(index, queries, exact_top(vectors[: n + live], queries, top_k),
                        None, top_k)
    return {
        "upsert_vectors_per_s": round(n / upsert_s, 1), "train_s": round(train_s, 2),
        "n_probes_curve": curve,
        "live": live_result,
        "after_live": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=25_000)
    parser.add_argument("--live", type=int, default=3_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    systems = args.systems.split(",")
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    texts, vectors = embedded_corpus(args.n + args.live + args.queries)
    queries = vectors[args.n + args.live :]
    results: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="ciphervec-bench-real-"))
    os.chmod(workdir, 0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
    try:
        for system in systems:
            if system == "pgvector":
                from bench import pgvector_queries  # noqa: PLC0415 - needs the test extra

                print(f"[pgvector] {args.n:,} real sentences, plaintext ...", flush=True)
                results[system] = pgvector_queries.run(
                    vectors[: args.n], queries, exact_top(vectors[: args.n], queries, args.top_k),
                    args.top_k)
                print(f"[pgvector] {json.dumps(results[system])}", flush=True)
                continue
            folder = workdir / system
            folder.mkdir()
            folder.chmod(0o755)  # noqa: S103 - as above
            server = ciphervec_server if system == "ciphervec" else reference_server
            with server(folder) as (base, key, _, _):
                print(f"[{system}] {args.n:,} real sentences ...", flush=True)
                results[system] = workload(base, key, vectors, queries, args.n, args.live,
                                           args.top_k)
                print(f"[{system}] {json.dumps(results[system])}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report: dict[str, Any] = {
        "workload": {**vars(args), "model": "all-MiniLM-L6-v2", "metric": "cosine",
                     "corpus_sentences": len(texts)},
        "machine": {"cpus": os.cpu_count()}, "results": results}
    path = RESULTS / f"real-text-{args.n}.json"
    carried = _carry_over(path, report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({**report, "results": {s: results[s] for s in systems}}, indent=2))
    if carried:
        print(f"kept the earlier results of {', '.join(carried)} in {path}")


def _system_order(system: str) -> int:
    return SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS)


def _carry_over(path: Path, report: dict[str, Any]) -> list[str]:
    """Put the results of systems this run skipped, from the report already at `path`
    for the same workload, into `report`; returns their names."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    if any(earlier.get("workload", {}).get(key) != report["workload"][key]
           for key in SAME_WORKLOAD):
        return []
    results = report["results"]
    carried = [s for s in earlier.get("results", {}) if s not in results]
    merged = {**{s: earlier["results"][s] for s in carried}, **results}
    report["results"] = {s: merged[s] for s in sorted(merged, key=_system_order)}
    if carried:
        report["carried_over"] = {
            "systems": carried,
            "note": "results of an earlier run of the same workload, not measured by this one",
            "earlier_systems_argument": earlier["workload"].get("systems"),
        }
    return carried


if __name__ == "__main__":
    main()
