"""Prometheus metrics of one service process: their names, labels and registry.

The api layer records requests, the services record training runs, and the
block cache and per-index sizes are read when /metrics is scraped. Each
`Metrics` owns its own registry (not prometheus_client's global one), so
several apps in one process (tests) never share or double-register series.

With several uvicorn workers every process has its own `Metrics`: a scrape
sees the worker that answered it (counters of other workers are not summed).
Label each worker as its own target, or run one worker per container.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.errors import CiphervecError

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Queries take a few milliseconds, upserts of large batches seconds.
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)
SEARCH_BLOCK_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
TRAINING_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

Trigger = Literal["explicit", "auto"]


class CacheCounters(Protocol):
    """What the block cache exposes: running totals of lookups."""

    hits: int
    misses: int


class _Snapshots(Collector):
    """Series whose values live elsewhere: the block cache's counters and the index
    sizes read from PostgreSQL at the last scrape."""

    def __init__(self) -> None:
        self.cache: CacheCounters | None = None
        self.index_sizes: Sequence[tuple[int, int]] = ()

    def collect(self) -> Iterable[Metric]:
        if self.cache is not None:
            yield CounterMetricFamily(
                "ciphervec_block_cache_hits", "Block ciphertext lookups served from memory.",
                value=self.cache.hits,
            )
            yield CounterMetricFamily(
                "ciphervec_block_cache_misses", "Block ciphertext lookups that went to PostgreSQL.",
                value=self.cache.misses,
            )
        # Labelled by the numeric index id, not tenant and name: names are chosen by
        # clients and may carry meaning they would not put in a monitoring system,
        # ids are opaque, short and stable; a DBA maps them with `SELECT id, tenant,
        # name FROM indexes`.
        sizes = GaugeMetricFamily(
            "ciphervec_index_vectors", "Live vectors per index (read at scrape time).",
            labels=["index_id"],
        )
        for index_id, n_items in self.index_sizes:
            sizes.add_metric([str(index_id)], n_items)
        yield sizes


class Metrics:
    """The metric families of one process and the registry that renders them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "ciphervec_http_requests", "HTTP requests by route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "ciphervec_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template and status.",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )
        self.training_runs = Counter(
            "ciphervec_training_runs", "Training runs by trigger and outcome.",
            ["trigger", "outcome"], registry=self.registry,
        )
        self.training_seconds = Histogram(
            "ciphervec_training_duration_seconds", "Duration of training runs.",
            ["trigger", "outcome"], buckets=TRAINING_BUCKETS, registry=self.registry,
        )
        # What the write tail and the tiered merges keep bounded (app.engine.tail).
        self.search_blocks = Histogram(
            "ciphervec_search_blocks_opened", "Encrypted blocks one search request opened.",
            buckets=SEARCH_BLOCK_BUCKETS, registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._snapshots = _Snapshots()
        self.registry.register(self._snapshots)

    def watch_block_cache(self, cache: CacheCounters) -> None:
        """Report this cache's hit and miss totals."""
        self._snapshots.cache = cache

    def set_index_sizes(self, sizes: Sequence[tuple[int, int]]) -> None:
        """Replace the per-index vector counts with (index id, count) pairs."""
        self._snapshots.index_sizes = sizes

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request (`method` one of METHODS or OTHER, `route` a template)."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() costs more than the update itself
            code = str(status)
            children = (
                self.requests.labels(method, route, code),
                self.request_seconds.labels(method, route, code),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def training_run(self, trigger: Trigger) -> Iterator[None]:
        """Time the enclosed training run and count it by outcome: success, rejected
        (the index cannot be trained as asked: 4xx), cancelled or error."""
        outcome = "error"
        start = time.perf_counter()
        try:
            yield
            outcome = "success"
        except CiphervecError as exc:
            outcome = "rejected" if exc.status_code < 500 else "error"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.training_runs.labels(trigger, outcome).inc()
            self.training_seconds.labels(trigger, outcome).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        """The text exposition format of every family."""
        return generate_latest(self.registry)
