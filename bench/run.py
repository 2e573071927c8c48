"""Side-by-side benchmark: ciphervec vs cyborgdb-service 0.18, through the official client.

Workload (defaults): N clustered 128-d vectors upserted in batches of 1,000,
one explicit train, 200 single queries with top_k=10, 50 reads of 10
random ids with their vectors, then 10,000 new items upserted into the
trained index, then the live phase: 3,000 more items (`--live`) in upserts
of 10, one query after each. Reports upsert vectors/s (and the p50 and
slowest request), train seconds, query p50/p95 ms, recall@10 against exact
search, get p50 ms, the trained upsert's vectors/s and the live phase's
upsert and query p50 (with the query p50's ratio to the quiet one), writes
bench/results/<name>.json and a PNG chart. The systems run in turn for three
rounds (`--rounds`), each on fresh storage; the figures are medians, and
every run is kept in the JSON. Then both run at once, their upsert requests
alternating, then (after a training run each) their queries, for ratios
that the machine's slow and fast spells do not tilt (`interleaved` in the JSON).

    python bench/run.py                      # both systems, 50,000 x 128
    python bench/run.py --scale              # both systems, up to 1,000,000 x 128, one round
    python bench/run.py --embeddings         # embedding throughput (needs the extra)

--embeddings measures the default embedding model on batches of 256 short
sentences: the model alone in this process, then contents-only upserts and
query_contents through the official client against ciphervec (no reference:
it cannot load a model offline). Writes bench/results/embeddings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cyborgdb import Client

from app.ops.bench import clustered_dataset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REFERENCE_PYTHON = ROOT / "bench" / ".venv-ref" / "bin" / "python"
# Reads by id after the queries: GETS requests of GET_IDS random ids, with vectors.
GETS, GET_IDS = 50, 10
# Vectors upserted into the trained index at the end of the workload.
TRAINED_UPSERTS = 10_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    norms = np.einsum("ij,ij->i", vectors, vectors)
    out = []
    for start in range(0, len(queries), 50):
        q = queries[start : start + 50]
        scores = norms[None, :] - 2 * q @ vectors.T
        out.append(np.argsort(scores, axis=1)[:, :k])
    return np.concatenate(out)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its children, in MB."""
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(p) for p in out.split()]


@contextmanager
def ciphervec_server(workdir: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes], Any]]:
    """ciphervec on an embedded PostgreSQL cluster (fsync on), in its own process,
    with its default settings."""
    sys.path.insert(0, str(ROOT))
    from app import migrate  # noqa: PLC0415 - the benchmark drives the repo's own code
    from app.localpg import LocalPostgres  # noqa: PLC0415

    cluster = LocalPostgres(workdir / "pg")
    cluster.start()
    url = cluster.url()
    migrate.upgrade(url)
    env = {**os.environ, "CIPHERVEC_DATABASE_URL": url}
    key = subprocess.run(
        [str(Path(sys.executable).parent / "ciphervec"), "keys", "create", "--name", "bench"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip().splitlines()[-1]
    port = free_port()
    # Its JSON logs go to a file, as the reference's output goes nowhere: neither
    # service pays for a terminal.
    log = (workdir / "ciphervec.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=log, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base, key, process, cluster
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        log.close()
        cluster.destroy()


@contextmanager
def reference_server(workdir: Path) -> Iterator[tuple[str, None, subprocess.Popen[bytes], None]]:
    """cyborgdb-service 0.18 with its disk backend, offline, in its own venv."""
    if not REFERENCE_PYTHON.exists():
        raise SystemExit("reference venv missing: run `make bench` (it installs bench/.venv-ref)")
    port = free_port()
    env = {**os.environ, "CYBORGDB_DB_TYPE": "disk", "CYBORGDB_DISK_PATH": str(workdir / "ref"),
           "PORT": str(port)}
    (workdir / "ref").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([str(REFERENCE_PYTHON), "-m", "cyborgdb_service"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base, None, process, None
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def live_phase(index: Any, ids: list[str], vectors: np.ndarray, queries: np.ndarray,
               top_k: int) -> dict[str, float]:
    """What an application does to a live index: `ids` upserted 10 at a time, one
    query (cycling through `queries`) after each. Request p50s in ms."""
    upserts, searches = [], []
    for step, start in enumerate(range(0, len(ids), 10)):
        began = time.perf_counter()
        index.upsert(ids[start : start + 10], vectors[start : start + 10])
        upserts.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        index.query(query_vectors=queries[step % len(queries)].tolist(), top_k=top_k)
        searches.append((time.perf_counter() - began) * 1000)
    return {"upsert_10_p50_ms": round(float(np.percentile(upserts, 50)), 2),
            "query_p50_ms": round(float(np.percentile(searches, 50)), 2),
            "query_p50_last_100_ms": round(float(np.percentile(searches[-100:], 50)), 2)}


def workload(base: str, api_key: str | None, vectors: np.ndarray, queries: np.ndarray,
             truth: np.ndarray, batch: int, top_k: int, live: int) -> dict[str, Any]:
    client = Client(base, api_key=api_key)
    index = client.create_index(f"bench-{secrets.token_hex(4)}", index_key=secrets.token_bytes(32),
                                dimension=vectors.shape[1], metric="euclidean")
    ids = [str(i) for i in range(len(vectors))]
    upsert_latencies = []
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        request_started = time.perf_counter()
        index.upsert(ids[start : start + batch], vectors[start : start + batch])
        upsert_latencies.append((time.perf_counter() - request_started) * 1000)
    upsert_s = time.perf_counter() - started

    started = time.perf_counter()
    index.train()
    train_s = time.perf_counter() - started

    latencies, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        hits = index.query(query_vectors=query.tolist(), top_k=top_k)
        latencies.append((time.perf_counter() - started) * 1000)
        found = {int(hit["id"]) for hit in hits}
        recalls.append(len(found & set(expected[:top_k].tolist())) / top_k)

    picks = np.random.default_rng(1).integers(0, len(vectors), (GETS, GET_IDS))
    get_latencies = []
    for pick in picks:
        started = time.perf_counter()
        index.get([ids[i] for i in pick], include=["vector", "metadata"])
        get_latencies.append((time.perf_counter() - started) * 1000)

    # New items into the trained index, where each vector is assigned to its
    # nearest list (what most upserts of a live index are): copies of the
    # first vectors under new ids, after the queries, so recall is unchanged.
    extra = min(TRAINED_UPSERTS, len(vectors))
    started = time.perf_counter()
    for start in range(0, extra, batch):
        stop = min(start + batch, extra)
        index.upsert([f"t{i}" for i in range(start, stop)], vectors[start:stop])
    trained_upsert_s = time.perf_counter() - started

    # Copies of the last vectors under new ids, so recall is unchanged.
    live_vectors = vectors[len(vectors) - min(live, len(vectors)) :]
    live_result = live_phase(index, [f"live{i}" for i in range(len(live_vectors))],
                             live_vectors, queries, top_k)
    quiet_p50 = float(np.percentile(latencies, 50))
    live_result["query_p50_vs_quiet"] = round(live_result["query_p50_ms"] / quiet_p50, 2)
    return {
        "upsert_vectors_per_s": round(len(vectors) / upsert_s, 1),
        "upsert_s": round(upsert_s, 2),
        "upsert_request_p50_ms": round(float(np.percentile(upsert_latencies, 50)), 2),
        "upsert_request_max_ms": round(max(upsert_latencies), 2),
        "trained_upsert_vectors_per_s": round(extra / trained_upsert_s, 1),
        "train_s": round(train_s, 2),
        "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "query_p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "get_10_ids_p50_ms": round(float(np.percentile(get_latencies, 50)), 2),
        "trained": index.is_trained(),
        "live": live_result,
    }


def chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only the benchmark needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    metrics = [("upsert_vectors_per_s", "upsert vectors/s (higher is better)"),
               ("trained_upsert_vectors_per_s", "trained upsert vectors/s (higher is better)"),
               ("train_s", "train seconds (lower is better)"),
               ("query_p50_ms", "query p50 ms (lower is better)"),
               ("query_p95_ms", "query p95 ms (lower is better)"),
               ("recall_at_10", "recall@10"),
               ("get_10_ids_p50_ms", f"get {GET_IDS} ids p50 ms (lower is better)")]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5))
    names = list(results)
    for axis, (key, title) in zip(axes, metrics, strict=True):
        values = [results[n][key] for n in names]
        axis.bar(names, values, color=["#2a7", "#888"][: len(names)])
        axis.set_title(title, fontsize=9)
        for x, v in enumerate(values):
            axis.annotate(f"{v:g}", (x, v), ha="center", va="bottom", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def embedding_benchmark(batch: int, batches: int, queries: int) -> dict[str, Any]:
    """Items embedded per second: the model alone, then end to end over HTTP."""
    sys.path.insert(0, str(ROOT))
    from app.embeddings import DEFAULT_MODEL, embed_texts  # noqa: PLC0415 - optional extra
    from tests.support.corpus import TOPICS, generated_sentences  # noqa: PLC0415

    texts = generated_sentences(batch * (batches + 1) + queries, seed=1)
    model = DEFAULT_MODEL.name
    started = time.perf_counter()
    embed_texts(model, texts[:1])
    load_s = time.perf_counter() - started
    rates = []
    for i in range(batches):
        started = time.perf_counter()
        embed_texts(model, texts[i * batch : (i + 1) * batch])
        rates.append(batch / (time.perf_counter() - started))
    result: dict[str, Any] = {
        "model": model, "batch": batch, "batches": batches,
        "model_load_s": round(load_s, 2),
        "model_items_per_s_median": round(float(np.median(rates)), 1),
        "model_items_per_s_min_max": [round(min(rates), 1), round(max(rates), 1)],
    }
    print(f"[model] {json.dumps(result)}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="ciphervec-bench-emb-"))
    os.chmod(workdir, 0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
    try:
        with ciphervec_server(workdir) as (base, key, process, _):
            client = Client(base, api_key=key)
            index = client.create_index(f"bench-emb-{secrets.token_hex(4)}",
                                        index_key=secrets.token_bytes(32), embedding_model=model)
            started = time.perf_counter()
            index.upsert([{"id": "warm", "contents": texts[0]}])  # loads the model in the server
            result["server_first_upsert_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            for i in range(1, batches + 1):
                chunk = texts[i * batch : (i + 1) * batch]
                index.upsert([{"id": str(i * batch + j), "contents": t}
                              for j, t in enumerate(chunk)])
            elapsed = time.perf_counter() - started
            result["upsert_items_per_s"] = round(batch * batches / elapsed, 1)
            latencies = []
            for topic_query in [q for _, q in TOPICS.values()] * (queries // len(TOPICS) + 1):
                started = time.perf_counter()
                index.query(query_contents=topic_query, top_k=10)
                latencies.append((time.perf_counter() - started) * 1000)
            result["query_contents_p50_ms"] = round(float(np.percentile(latencies, 50)), 2)
            result["query_contents_p95_ms"] = round(float(np.percentile(latencies, 95)), 2)
            result["peak_rss_mb"] = peak_rss_mb(process.pid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def run_system(system: str, workdir: Path, vectors: np.ndarray, queries: np.ndarray,
               truth: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """One system, freshly started in `workdir`, through the whole workload."""
    server = ciphervec_server if system == "ciphervec" else reference_server
    with server(workdir) as (base, key, process, cluster):
        print(f"[{system}] running {args.n} x {args.dim} ...", flush=True)
        result = workload(base, key, vectors, queries, truth, args.batch, args.top_k, args.live)
        result["peak_rss_mb"] = peak_rss_mb(process.pid)
        if cluster is not None:
            size = subprocess.run(
                cluster.run_as_owner_args([
                    str(cluster.bin_dir / "psql"), "-X", "-t", "-A", "-c",
                    "SELECT pg_database_size(current_database())", cluster.libpq_url(),
                ]), capture_output=True, text=True, check=True,
            ).stdout.strip()
            result["postgres_mb"] = round(int(size) / 1024 / 1024, 1)
    return result


def interleaved(workdir: Path, vectors: np.ndarray, queries: np.ndarray, batch: int,
                top_k: int) -> dict[str, Any]:
    """Both services up at once, their requests alternating (which goes first
    alternates too), so a slow spell of the machine hits both alike: the upserts,
    one training run each, then the queries. Median ms per request, and the
    reference's over ciphervec's."""
    systems = ("ciphervec", "reference")
    with ExitStack() as stack:
        indexes = {}
        servers: tuple[Callable[[Path], Any], ...] = (ciphervec_server, reference_server)
        for system, server in zip(systems, servers, strict=True):
            folder = workdir / f"{system}-interleaved"
            folder.mkdir()
            folder.chmod(0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
            base, key, _, _ = stack.enter_context(server(folder))
            indexes[system] = Client(base, api_key=key).create_index(
                f"bench-{secrets.token_hex(4)}", index_key=secrets.token_bytes(32),
                dimension=vectors.shape[1], metric="euclidean",
            )
        ids = [str(i) for i in range(len(vectors))]
        starts = range(0, len(vectors), batch)
        upserts = _alternating(indexes, len(starts), lambda index, step: index.upsert(
            ids[starts[step] : starts[step] + batch], vectors[starts[step] : starts[step] + batch]
        ))
        for index in indexes.values():
            index.train()
        searches = _alternating(indexes, len(queries), lambda index, step: index.query(
            query_vectors=queries[step].tolist(), top_k=top_k
        ))
    return {"upsert": upserts, "query": searches}


def _alternating(indexes: dict[str, Any], steps: int, request: Callable[[Any, int], object]
                 ) -> dict[str, float]:
    walls: dict[str, list[float]] = {system: [] for system in indexes}
    for step in range(steps):
        order = list(indexes) if step % 2 == 0 else list(reversed(indexes))
        for system in order:
            started = time.perf_counter()
            request(indexes[system], step)
            walls[system].append((time.perf_counter() - started) * 1000)
    c, r = (float(np.median(walls[s])) for s in ("ciphervec", "reference"))
    return {"ciphervec_ms_p50": round(c, 2), "reference_ms_p50": round(r, 2),
            "ratio": round(r / c, 2)}


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (booleans: true only if true in every run;
    groups of figures, figure by figure)."""
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(first, dict):
            merged[key] = median_result(values)
            continue
        merged[key] = all(values) if isinstance(first, bool) else round(
            float(np.median(values)), 4 if key == "recall_at_10" else 2
        )
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--systems", default="ciphervec,reference")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run the systems in turn this many times; figures are medians")
    parser.add_argument("--live", type=int, default=3_000,
                        help="items upserted 10 at a time, a query after each, at the end")
    parser.add_argument("--scale", action="store_true", help="1,000,000 x 128, one round")
    parser.add_argument("--embeddings", action="store_true",
                        help="embedding throughput, batches of 256 texts (needs the extra)")
    args = parser.parse_args()
    if args.embeddings:
        embedding_report = {"workload": {"batch": 256, "batches": 8, "queries": 50},
                  "machine": {"cpus": os.cpu_count()},
                  "results": embedding_benchmark(batch=256, batches=8, queries=50)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "embeddings.json").write_text(json.dumps(embedding_report, indent=2) + "\n")
        print(json.dumps(embedding_report, indent=2))
        return
    if args.scale:
        # The reference's free tier caps an index at 1,000,000 items: the load
        # leaves room for the trained upserts and the live phase to end there.
        args.n, args.rounds = 1_000_000 - TRAINED_UPSERTS - args.live, 1
    vectors, queries = clustered_dataset(args.n, args.dim, args.queries)
    truth = exact_top_k(vectors, queries, args.top_k)
    systems = args.systems.split(",")
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
    workdir = Path(tempfile.mkdtemp(prefix="ciphervec-bench-"))
    os.chmod(workdir, 0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
    try:
        # Rounds alternate the systems, so a slow spell of this shared machine
        # hits both rather than one.
        for round_no in range(args.rounds):
            for system in systems:
                folder = workdir / f"{system}-{round_no}"
                folder.mkdir()
                folder.chmod(0o755)  # noqa: S103 - as above
                result = run_system(system, folder, vectors, queries, truth, args)
                runs[system].append(result)
                print(f"[{system} round {round_no + 1}] {json.dumps(result)}", flush=True)
        alternating = (
            interleaved(workdir, vectors, queries, args.batch, args.top_k)
            if set(systems) == {"ciphervec", "reference"} and not args.scale
            else None
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {system: median_result(system_runs) for system, system_runs in runs.items()}
    report: dict[str, Any] = {"workload": vars(args), "machine": {"cpus": os.cpu_count()},
                              "results": results, "runs": runs}
    if "ciphervec" in results and "reference" in results:
        c, r = results["ciphervec"], results["reference"]
        report["ratios"] = {
            "upsert_throughput": round(c["upsert_vectors_per_s"] / r["upsert_vectors_per_s"], 2),
            "trained_upsert_throughput": round(
                c["trained_upsert_vectors_per_s"] / r["trained_upsert_vectors_per_s"], 2
            ),
            "train_time": round(r["train_s"] / max(c["train_s"], 1e-9), 2),
            "query_p50": round(r["query_p50_ms"] / max(c["query_p50_ms"], 1e-9), 2),
        }
    if alternating is not None:
        report["interleaved"] = alternating
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "scale-1m" if args.scale else f"side-by-side-{args.n}"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(results, RESULTS / f"{name}.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
