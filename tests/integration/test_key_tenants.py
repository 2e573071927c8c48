"""Which tenant a new API key joins: a new one named after the key by default, an
existing one only when asked for by name."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.errors import TenantExists
from app.services import auth
from app.store.db import Database
from tests.support.app_client import app_client


@pytest.fixture
def tenant_name() -> str:
    """A tenant name no test has used."""
    return f"tenant-{uuid.uuid4().hex[:12]}"


def _tenants_of(runner: CliRunner, name: str) -> list[str]:
    """The tenant column of every key labelled `name` in `keys list`."""
    rows = [line.split("\t") for line in runner.invoke(cli, ["keys", "list"]).output.splitlines()]
    return [row[2] for row in rows if len(row) > 2 and row[1] == name]


def test_a_key_named_after_an_existing_tenant_is_refused_without_tenant(
    runner: CliRunner, tenant_name: str
) -> None:
    assert runner.invoke(cli, ["keys", "create", "--name", tenant_name]).exit_code == 0
    again = runner.invoke(cli, ["keys", "create", "--name", tenant_name])
    assert again.exit_code == 1
    assert f"--tenant {tenant_name}" in again.output
    assert "--name" in again.output
    assert _tenants_of(runner, tenant_name) == [tenant_name]  # nothing was added


def test_an_explicit_tenant_adds_the_key_to_that_tenant(
    runner: CliRunner, tenant_name: str
) -> None:
    assert runner.invoke(cli, ["keys", "create", "--name", tenant_name]).exit_code == 0
    joined = runner.invoke(
        cli, ["keys", "create", "--name", f"{tenant_name}-ci", "--tenant", tenant_name]
    )
    assert joined.exit_code == 0, joined.output
    assert f"tenant {tenant_name}" in joined.output
    assert _tenants_of(runner, f"{tenant_name}-ci") == [tenant_name]


async def test_a_tenant_that_only_has_indexes_is_not_joined_by_accident(
    runner: CliRunner, settings: Settings, db: Database, tenant_name: str
) -> None:
    first = await auth.create_api_key(db, name=tenant_name)
    index = {"index_name": "kept", "index_key": secrets.token_hex(32), "dimension": 4}
    async with app_client(settings, api_key=first.secret) as http:
        assert (await http.post("/indexes/create", json=index)).status_code == 200
    async with db.transaction() as conn:  # its keys gone, its index left
        await conn.execute(text("DELETE FROM api_keys WHERE tenant = :t"), {"t": tenant_name})

    refused = await asyncio.to_thread(runner.invoke, cli, ["keys", "create", "--name", tenant_name])

    assert refused.exit_code == 1
    assert f"--tenant {tenant_name}" in refused.output


async def test_concurrent_keys_of_one_new_name_make_one_tenant_key(
    db: Database, tenant_name: str
) -> None:
    outcomes = await asyncio.gather(
        *(auth.create_api_key(db, name=tenant_name) for _ in range(4)), return_exceptions=True
    )
    made = [o for o in outcomes if isinstance(o, auth.NewApiKey)]
    assert len(made) == 1
    assert all(isinstance(o, TenantExists) for o in outcomes if o not in made)
