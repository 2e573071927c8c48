"""Bounded mixed load: concurrent clients upsert, query, delete and train one index.

Each client owns its own id range and keeps a model of what the service has
acknowledged, so at the end the union of the models must equal the index
exactly (no lost write, no resurrected delete). Every request has a timeout,
so a deadlock shows up as a failure, not a hang.

    python bench/load.py                 # against a fresh embedded service, prints JSON
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

DIMENSION = 16
UPSERT_BATCH = 20


@dataclass
class LoadReport:
    """What the run did and what it found."""

    operations: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    expected_ids: set[str] = field(default_factory=set)
    stored_ids: set[str] = field(default_factory=set)
    stored_count: int = -1
    stale_reads: int = 0

    @property
    def ops_per_s(self) -> float:
        """Requests answered per second over the whole run."""
        return self.operations / self.seconds if self.seconds else 0.0

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {
            "operations": self.operations, "seconds": round(self.seconds, 2),
            "ops_per_s": round(self.ops_per_s, 1), "statuses": dict(self.statuses),
            "server_errors": self.server_errors,
            "lost_items": len(self.expected_ids - self.stored_ids),
            "unexpected_items": len(self.stored_ids - self.expected_ids),
            "count_matches": self.stored_count == len(self.expected_ids),
            "stale_reads": self.stale_reads,
        }


class _Client(threading.Thread):
    def __init__(self, number: int, url: str, api_key: str, index: dict[str, str],
                 operations: int, train_at: int | None, report: LoadReport,
                 lock: threading.Lock) -> None:
        super().__init__(name=f"load-client-{number}", daemon=True)
        self.number, self.url, self.api_key, self.index = number, url, api_key, index
        self.operations, self.train_at = operations, train_at
        self.report, self.lock = report, lock
        self.live: dict[str, list[float]] = {}
        self.rng = np.random.default_rng(number)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, headers={"X-API-Key": self.api_key},
                              timeout=120) as http:
                for step in range(self.operations):
                    self._step(http, step)
        except BaseException as exc:  # reported to the caller, who fails the run
            self.error = exc

    def _post(self, http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
        response = http.post(path, json={**self.index, **body})
        with self.lock:
            self.report.statuses[response.status_code] += 1
        return response

    def _step(self, http: httpx.Client, step: int) -> None:
        if step == self.train_at:
            self._post(http, "/indexes/train", {"n_lists": 8})
            return
        roll = self.rng.random()
        if roll < 0.5 or len(self.live) < UPSERT_BATCH:
            ids = [f"c{self.number}-{int(k)}" for k in self.rng.integers(0, 2_000, UPSERT_BATCH)]
            ids = list(dict.fromkeys(ids))
            vectors = self.rng.normal(size=(len(ids), DIMENSION)).tolist()
            response = self._post(http, "/vectors/upsert", {
                "items": [{"id": i, "vector": v} for i, v in zip(ids, vectors, strict=True)],
            })
            if response.status_code == 200:
                self.live.update(zip(ids, vectors, strict=True))
        elif roll < 0.8:
            probe = list(self.live)[int(self.rng.integers(len(self.live)))]
            response = self._post(http, "/vectors/get", {"ids": [probe], "include": ["vector"]})
            if response.status_code == 200:
                got = response.json()["results"]
                if not got or not np.allclose(got[0]["vector"], self.live[probe], atol=1e-5):
                    with self.lock:
                        self.report.stale_reads += 1
            self._post(http, "/vectors/query", {
                "query_vectors": self.live[probe], "top_k": 5, "n_probes": 8,
            })
        else:
            doomed = list(self.live)[: int(self.rng.integers(1, 5))]
            response = self._post(http, "/vectors/delete", {"ids": doomed})
            if response.status_code == 200:
                for item_id in doomed:
                    del self.live[item_id]


def run_load(url: str, api_key: str, *, clients: int = 4, operations: int = 200) -> LoadReport:
    """Run `clients` threads of `operations` requests each against a new index at `url`
    (ending in /v1), then compare the index with what was acknowledged."""
    index = {"index_name": f"load-{secrets.token_hex(4)}", "index_key": secrets.token_hex(32)}
    headers = {"X-API-Key": api_key}
    created = httpx.post(f"{url}/indexes/create", headers=headers, timeout=60,
                         json={**index, "dimension": DIMENSION})
    created.raise_for_status()
    report = LoadReport(operations=clients * operations, seconds=0.0)
    lock = threading.Lock()
    workers = [
        _Client(n, url, api_key, index, operations, operations // 2 if n == 0 else None,
                report, lock)
        for n in range(clients)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    report.seconds = time.monotonic() - started
    for worker in workers:
        if worker.error is not None:
            raise RuntimeError(f"{worker.name} failed") from worker.error
        report.expected_ids |= set(worker.live)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        report.stored_ids = set(http.post("/vectors/list_ids", json=index).json()["ids"])
        report.stored_count = http.post("/vectors/num_vectors", json=index).json()["result"]
    return report


def main() -> None:
    import argparse  # noqa: PLC0415 - only the command line needs these
    import shutil  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import RESULTS, ciphervec_server  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--operations", type=int, default=500, help="requests per client")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ciphervec-load-"))
    workdir.chmod(0o755)  # noqa: S103 - the embedded cluster runs as the postgres user
    try:
        with ciphervec_server(workdir) as (base, key, _, _):
            report = run_load(f"{base}/v1", key, clients=args.clients,
                              operations=args.operations)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"workload": vars(args), **report.summary()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
