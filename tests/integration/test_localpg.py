"""The local PostgreSQL cluster: start, connect, restart on the same port, destroy, and
where the embedded one goes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from app.localpg import SHARED_CLUSTERS, LocalPostgres, embedded_cluster_dir


@pytest.fixture
def root() -> Iterator[Path]:
    """A temp dir the postgres user can traverse (the cluster goes below it)."""
    path = Path(tempfile.mkdtemp(prefix="ciphervec-localpg-"))
    os.chmod(path, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    try:
        yield path
    finally:
        LocalPostgres(path / "pg").destroy()
        shutil.rmtree(path)


async def _fetch(cluster: LocalPostgres, database: str, sql: str) -> object:
    connection = await asyncpg.connect(cluster.libpq_url(database))
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_serves_a_created_database_on_loopback_tcp_only(root: Path) -> None:
    cluster = LocalPostgres(root / "pg", fast=True)
    cluster.start()
    url = cluster.create_database("probe")

    assert url == f"postgresql+asyncpg://ciphervec@127.0.0.1:{cluster.port}/probe"
    assert await _fetch(cluster, "probe", "SELECT 1") == 1
    assert await _fetch(cluster, "probe", "SELECT current_user") == "ciphervec"
    assert await _fetch(cluster, "probe", "SHOW listen_addresses") == "127.0.0.1"
    assert await _fetch(cluster, "probe", "SHOW unix_socket_directories") == ""
    assert await _fetch(cluster, "probe", "SHOW fsync") == "off"
    assert await _fetch(cluster, "ciphervec", "SELECT 1") == 1  # the default database

    cluster.destroy()
    assert not cluster.data_dir.exists()
    cluster.destroy()  # nothing left to do, no error


async def test_restart_reuses_the_port_and_keeps_the_data(root: Path) -> None:
    with LocalPostgres(root / "pg") as first:
        port = first.port
        assert await _fetch(first, "ciphervec", "SHOW fsync") == "on"  # durable by default
        await _fetch(first, "ciphervec", "CREATE TABLE kept AS SELECT 42 AS answer")
        # A second handle on a running cluster reuses it rather than starting another.
        running = LocalPostgres(root / "pg")
        running.start()
        assert running.port == port
    assert not first.is_running()
    first.stop()  # not running: no error

    again = LocalPostgres(root / "pg")
    assert again.port == port
    with again:
        assert again.port == port
        assert await _fetch(again, "ciphervec", "SELECT answer FROM kept") == 42


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_refuses_a_data_dir_the_postgres_user_cannot_reach() -> None:
    private = Path(tempfile.mkdtemp(prefix="ciphervec-localpg-"))  # mode 0700, root's
    try:
        with pytest.raises(RuntimeError, match="cannot reach"):
            LocalPostgres(private / "pg").start()
        assert not (private / "pg").exists()
    finally:
        shutil.rmtree(private)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
async def test_a_data_dir_the_postgres_user_cannot_reach_keeps_one_cluster_outside_it() -> None:
    private = Path(tempfile.mkdtemp(prefix="ciphervec-localpg-"))  # mode 0700, root's
    shared_existed = SHARED_CLUSTERS.exists()
    placed = embedded_cluster_dir(private / ".ciphervec")
    try:
        assert placed.parent == SHARED_CLUSTERS
        with LocalPostgres(placed) as first:
            await _fetch(first, "ciphervec", "CREATE TABLE kept AS SELECT 42 AS answer")
        assert embedded_cluster_dir(private / ".ciphervec") == placed
        with LocalPostgres(placed) as again:
            assert await _fetch(again, "ciphervec", "SELECT answer FROM kept") == 42
        assert embedded_cluster_dir(private / "elsewhere") != placed
        assert private.stat().st_mode & 0o777 == 0o700
    finally:
        LocalPostgres(placed).destroy()
        shutil.rmtree(private)
        if not shared_existed:
            SHARED_CLUSTERS.rmdir()
