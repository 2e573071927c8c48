"""GET /v1/ready: 200 when PostgreSQL answers, 503 with Retry-After within a couple
of seconds when it does not; GET /v1/health answers 200 regardless. (The database
stopped and started again: tests/reliability/test_database_outage.py.)"""

from __future__ import annotations

import importlib.metadata
import socket
import time
from collections.abc import Iterator

import cyborgdb
import pytest

from app.config import Settings
from app.version import CYBORGDB_API_LEVEL
from tests.support.app_client import app_client
from tests.support.server import free_port


async def test_readiness_answers_200_without_an_api_key_while_the_database_answers(
    settings: Settings,
) -> None:
    async with app_client(settings) as anonymous:
        response = await anonymous.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers: a PostgreSQL
    that hangs (overloaded, or behind a network that drops its packets)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


async def test_readiness_answers_503_within_its_bound_when_the_database_hangs(
    silent_server: int,
) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{silent_server}/none"
    # The pool would wait 60 s for a connection; readiness does not.
    async with app_client(Settings(database_url=url, db_connect_timeout_s=60)) as http:
        started = time.monotonic()
        ready = await http.get("/ready")
        took = time.monotonic() - started
        health = await http.get("/health")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"]
    assert ready.json() == {"detail": "Database unavailable, try again shortly"}
    assert took < 20
    assert health.status_code == 200


async def test_liveness_keeps_its_body_when_the_database_is_unreachable() -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    async with app_client(Settings(database_url=url, db_connect_timeout_s=2)) as http:
        health = await http.get("/health")
        ready = await http.get("/ready")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "api_version", "version", "ciphervec_version"}
    assert health.json()["status"] == "healthy"
    assert ready.status_code == 503


async def test_health_reports_the_cyborgdb_api_level_as_version_and_ciphervec_apart(
    settings: Settings,
) -> None:
    async with app_client(settings) as anonymous:
        health = (await anonymous.get("/health")).json()
    assert health["version"] == CYBORGDB_API_LEVEL
    assert health["version"].split(".")[:2] == cyborgdb.__version__.split(".")[:2]
    assert health["ciphervec_version"] == importlib.metadata.version("ciphervec")
