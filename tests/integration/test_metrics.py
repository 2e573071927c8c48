"""GET /metrics: the families an operator scrapes, labelled by route template, on the
API's address or on an address of its own."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.store import indexes as index_repo
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.server import free_port


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a /metrics page."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def _scrape(client: httpx.AsyncClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await client.get("http://test/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


@pytest.fixture
async def trained(client: httpx.AsyncClient, index: dict[str, Any]) -> dict[str, Any]:
    """The test index with 40 vectors, trained into 2 lists and queried once."""
    items = [{"id": f"m{n}", "vector": [float(n), float(n % 3), 0.0, 1.0]} for n in range(40)]
    assert (await client.post("/vectors/upsert", json={**index, "items": items})).is_success
    assert (await client.post("/indexes/train", json={**index, "n_lists": 2})).is_success
    query = {**index, "query_vectors": [1.0, 0.0, 0.0, 1.0], "top_k": 3}
    assert (await client.post("/vectors/query", json=query)).is_success
    return index


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, trained: dict[str, Any]
) -> None:
    samples = await _scrape(client)
    counted = samples["ciphervec_http_requests_total"]
    routes = {(labels["route"], labels["status"]) for labels, _ in counted}
    assert ("/v1/vectors/query", "200") in routes
    assert ("/v1/indexes/train", "200") in routes
    timed = samples["ciphervec_http_request_duration_seconds_bucket"]
    assert "/v1/vectors/upsert" in {labels["route"] for labels, _ in timed}


async def test_unknown_paths_are_labelled_unrouted_not_by_their_path(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/no-such-route/patient-0042")).status_code == 404
    response = await client.get("http://test/metrics")
    assert "patient-0042" not in response.text
    assert 'route="<unrouted>",status="404"' in response.text


async def test_training_runs_are_counted_and_timed_by_trigger_and_outcome(
    client: httpx.AsyncClient, trained: dict[str, Any]
) -> None:
    samples = await _scrape(client)
    runs = {
        (labels["trigger"], labels["outcome"]): value
        for labels, value in samples["ciphervec_training_runs_total"]
    }
    assert runs[("explicit", "success")] >= 1
    durations = [
        value for labels, value in samples["ciphervec_training_duration_seconds_count"]
        if labels == {"trigger": "explicit", "outcome": "success"}
    ]
    assert durations and durations[0] >= 1


async def test_index_sizes_are_reported_by_numeric_index_id(
    client: httpx.AsyncClient, trained: dict[str, Any], db: Database
) -> None:
    async with db.transaction() as conn:
        row = await index_repo.find_index(conn, "tests", trained["index_name"])
    assert row is not None
    samples = await _scrape(client)
    sizes = {labels["index_id"]: value for labels, value in samples["ciphervec_index_vectors"]}
    assert sizes[str(row.id)] == 40


async def test_block_cache_hits_and_misses_are_exposed(
    client: httpx.AsyncClient, trained: dict[str, Any]
) -> None:
    samples = await _scrape(client)
    hits = samples["ciphervec_block_cache_hits_total"][0][1]
    misses = samples["ciphervec_block_cache_misses_total"][0][1]
    assert hits + misses >= 1


async def test_metrics_are_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


@pytest.fixture
async def without_metrics(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"metrics": False}),
                          base_url="http://test") as client:
        yield client


async def test_metrics_can_be_switched_off(without_metrics: httpx.AsyncClient) -> None:
    assert (await without_metrics.get("/metrics")).status_code == 404
    assert (await without_metrics.get("/v1/health")).status_code == 200


async def test_unusual_methods_share_one_label(client: httpx.AsyncClient) -> None:
    await client.request("BREWCOFFEE", "/health")
    response = await client.get("http://test/metrics")
    assert "BREWCOFFEE" not in response.text
    assert 'method="OTHER"' in response.text


@pytest.fixture
def metrics_addr() -> str:
    """A free loopback address for the metrics listener."""
    return f"127.0.0.1:{free_port()}"


async def test_metrics_addr_moves_metrics_off_the_api_address(
    settings: Settings, metrics_addr: str, api_key: str, index: dict[str, Any]
) -> None:
    separate = settings.model_copy(update={"metrics_addr": metrics_addr})
    async with app_client(separate, api_key=api_key, base_url="http://test") as api:
        assert (await api.get("/v1/health")).status_code == 200
        assert (await api.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://{metrics_addr}/metrics")
    assert response.status_code == 200
    samples = _samples(response.text)
    assert ("/v1/health", "200") in {
        (labels["route"], labels["status"]) for labels, _ in
        samples["ciphervec_http_requests_total"]
    }
    assert samples["ciphervec_index_vectors"]  # sizes refreshed from PostgreSQL


async def test_the_metrics_listener_stops_with_the_app(
    settings: Settings, metrics_addr: str
) -> None:
    async with app_client(settings.model_copy(update={"metrics_addr": metrics_addr})):
        pass
    async with httpx.AsyncClient() as scraper:
        with pytest.raises(httpx.ConnectError):
            await scraper.get(f"http://{metrics_addr}/metrics")


async def test_a_taken_metrics_addr_stops_the_app_from_starting(
    settings: Settings, metrics_addr: str
) -> None:
    host, port = metrics_addr.split(":")
    with socket.create_server((host, int(port))), pytest.raises(
        RuntimeError, match=f"CIPHERVEC_METRICS_ADDR {metrics_addr}"
    ):
        async with app_client(settings.model_copy(update={"metrics_addr": metrics_addr})):
            pass


@pytest.mark.parametrize("address", ["9100", "127.0.0.1", "127.0.0.1:http", ":9100",
                                     "127.0.0.1:70000"])
def test_a_metrics_addr_that_is_not_host_port_is_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="is not host:port"):
        Settings(metrics_addr=address)


def test_serve_refuses_several_workers_on_one_metrics_addr(metrics_addr: str) -> None:
    # No database listens there: were the combination let through, serve would fail
    # at once on migrations rather than serve.
    env = {"CIPHERVEC_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
           "CIPHERVEC_METRICS_ADDR": metrics_addr}
    result = CliRunner().invoke(cli, ["serve", "--workers", "2", "--port", str(free_port())],
                                env=env)
    assert result.exit_code == 2
    assert "CIPHERVEC_METRICS_ADDR" in result.output
