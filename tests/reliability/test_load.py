"""Concurrent clients mixing upserts, queries, deletes and a train: no 5xx, no lost
item, no deadlock (every request has a timeout)."""

from __future__ import annotations

from bench.load import run_load
from tests.support.process import running_service


def test_mixed_concurrent_load_ends_with_no_errors_and_exactly_the_acknowledged_items(
    database_url: str, api_key: str
) -> None:
    with running_service(database_url) as service:
        report = run_load(service.url, api_key, clients=4, operations=60)
    summary = report.summary()
    assert set(report.statuses) == {200}, summary
    assert report.expected_ids == report.stored_ids, summary
    assert report.stored_count == len(report.expected_ids), summary
    assert report.stale_reads == 0, summary
