"""Shared fixtures: one throwaway PostgreSQL cluster per test session, migrated once,
and the app driven over HTTP (in-process ASGI for integration tests)."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app import migrate
from app.config import Settings
from app.localpg import LocalPostgres
from app.services import auth
from app.store.db import Database
from tests.support.app_client import app_client
from tests.support.kms import REGION, MotoKms


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    """A PostgreSQL cluster in a temp dir, removed at the end of the session."""
    root = Path(tempfile.mkdtemp(prefix="ciphervec-test-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    cluster = LocalPostgres(root / "pg", fast=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        root.rmdir()


@pytest.fixture(scope="session")
def database_url(pg_cluster: LocalPostgres) -> str:
    """A database migrated to head, shared by the session (tests use unique index names)."""
    url = pg_cluster.create_database("ciphervec_test")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def moto_kms() -> Iterator[MotoKms]:
    """moto's KMS server on loopback for the whole session."""
    server = MotoKms()
    server.start()
    try:
        yield server
    finally:
        server.stop()


LOCAL_B_ENV = "CIPHERVEC_TEST_MASTER_KEY_B"


@pytest.fixture(scope="session")
def kms_config(moto_kms: MotoKms) -> Iterator[Path]:
    """A KMS registry: two local master keys (file, env var) and two AWS keys on moto."""
    root = Path(tempfile.mkdtemp(prefix="ciphervec-kms-"))
    master_a = root / "master-a.key"
    master_a.write_bytes(secrets.token_bytes(32))
    os.environ[LOCAL_B_ENV] = secrets.token_hex(32)
    aws = {"provider": "aws", "region": REGION, "endpoint_url": moto_kms.url}
    registry = {
        "local-a": {"provider": "local", "key_id": "master-a", "key_file": str(master_a)},
        "local-b": {"provider": "local", "key_id": "master-b", "key_env": LOCAL_B_ENV},
        "aws-a": {**aws, "key_id": moto_kms.create_key()},
        "aws-b": {**aws, "key_id": moto_kms.create_key()},
    }
    path = root / "kms.yaml"
    path.write_text(json.dumps({"kms": {"registry": registry}}))  # JSON is YAML
    try:
        yield path
    finally:
        os.environ.pop(LOCAL_B_ENV, None)
        master_a.unlink()
        path.unlink()
        root.rmdir()


@pytest.fixture(scope="session")
def settings(database_url: str, kms_config: Path) -> Settings:
    """Settings pointing at the test database and KMS registry, with a small request
    limit to test 413 and background compaction checked once per index (tests compact
    explicitly)."""
    return Settings(
        database_url=database_url,
        kms_config=kms_config,
        max_request_bytes=8 * 1024 * 1024,
        compaction_check_interval_s=3600,
    )


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    """A pool for arranging test state directly through the services."""
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def api_key(db: Database) -> str:
    """A valid API key of tenant `tests`."""
    return (await auth.create_api_key(db, name="tests")).secret


@pytest.fixture(scope="session")
async def client(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process, authenticated."""
    async with app_client(settings, api_key=api_key) as http:
        yield http


@pytest.fixture
async def second_process(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second app instance: its own pool and caches, the same database."""
    async with app_client(settings, api_key=api_key, base_url="http://other/v1") as http:
        yield http


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Runs `ciphervec` commands against the test database."""
    monkeypatch.setenv("CIPHERVEC_DATABASE_URL", database_url)
    return CliRunner()


@pytest.fixture
def index_key() -> str:
    """A fresh 32-byte index key, hex-encoded."""
    return secrets.token_hex(32)


@pytest.fixture
def index_name() -> str:
    """A unique index name."""
    return f"idx-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def index(client: httpx.AsyncClient, index_name: str, index_key: str) -> dict[str, Any]:
    """A created 4-d euclidean index: the base body of every call on it."""
    body = {"index_name": index_name, "index_key": index_key}
    response = await client.post("/indexes/create", json={**body, "dimension": 4})
    assert response.status_code == 200, response.text
    return body
