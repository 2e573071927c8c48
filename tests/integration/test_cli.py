"""The `ciphervec` commands keys, bench and serve against the test database, and serve
with its embedded PostgreSQL cluster."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.localpg import SHARED_CLUSTERS, LocalPostgres
from app.version import CYBORGDB_API_LEVEL
from bench.run import wait_healthy
from tests.support.process import ciphervec_command
from tests.support.server import free_port


def test_version_names_ciphervec_and_the_cyborgdb_api_level(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"ciphervec {importlib.metadata.version('ciphervec')} (CyborgDB API {CYBORGDB_API_LEVEL})"
    )


def test_keys_create_prints_the_key_alone_on_its_last_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["keys", "create", "--name", "cli-made"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("cv_") and " " not in last


def test_keys_list_shows_prefixes_but_never_keys(runner: CliRunner) -> None:
    key = runner.invoke(cli, ["keys", "create", "--name", "listed"]).output.strip().splitlines()[-1]
    listing = runner.invoke(cli, ["keys", "list"])
    assert listing.exit_code == 0
    prefix = key.split("_")[1]
    assert prefix in listing.output and "listed" in listing.output
    assert key not in listing.output


def test_keys_revoke_marks_the_key_revoked(runner: CliRunner) -> None:
    key = runner.invoke(cli, ["keys", "create", "--name", "doomed"]).output.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    assert runner.invoke(cli, ["keys", "revoke", prefix]).exit_code == 0
    line = next(
        row for row in runner.invoke(cli, ["keys", "list"]).output.splitlines()
        if row.startswith(prefix)
    )
    assert "revoked" in line
    assert runner.invoke(cli, ["keys", "revoke", prefix]).exit_code == 1


def test_bench_reports_upsert_train_and_query_figures(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["bench", "--vectors", "600", "--dimension", "8", "--queries", "10",
              "--batch-size", "200"],
    )
    assert result.exit_code == 0, result.output
    assert "vectors/s" in result.stdout and "p50" in result.stdout and "lists" in result.stdout


@pytest.fixture
def two_workers(database_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`ciphervec serve --workers 2` on a free port; its base URL and process."""
    port = free_port()
    env = {**os.environ, "CIPHERVEC_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve",
         "--workers", "2", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_runs_several_workers_logging_json(
    two_workers: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = two_workers
    assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    started = {line["event"] for line in lines if line["event"].startswith("Started server")}
    assert len(started) == 2  # one "Started server process [pid]" per worker
    assert any(line.get("route") == "/v1/health" for line in lines)


@contextmanager
def serving_embedded(
    data_dir: Path, *options: str
) -> Iterator[tuple[subprocess.Popen[bytes], IO[str]]]:
    """`ciphervec serve OPTIONS` on a free loopback port with no database URL, so it runs
    the embedded cluster of `data_dir`: the process (healthy) and its stderr, readable.
    The process is killed at the end if it still runs; the cluster is the caller's."""
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if name not in ("CIPHERVEC_DATABASE_URL", "DATABASE_URL")}
    env["CIPHERVEC_DATA_DIR"] = str(data_dir)
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            ciphervec_command("serve", "--host", "127.0.0.1", "--port", str(port), *options),
            env=env, cwd=data_dir.parent, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        try:
            try:
                wait_healthy(f"http://127.0.0.1:{port}", process, timeout=90)
            except RuntimeError as exc:
                stderr.seek(0)
                raise RuntimeError(f"{exc}; its stderr:\n{stderr.read()}") from None
            yield process, stderr
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A directory like a clone of the project that the postgres user can reach; the
    embedded cluster of its data dir is stopped and removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="ciphervec-checkout-"))
    os.chmod(path, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    try:
        yield path
    finally:
        LocalPostgres(path / ".ciphervec" / "pg").destroy()
        shutil.rmtree(path)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_embedded_postgresql_that_serve_started(
    checkout: Path, workers: int
) -> None:
    cluster = LocalPostgres(checkout / ".ciphervec" / "pg")
    with serving_embedded(checkout / ".ciphervec", "--workers", str(workers)) as (process, _):
        assert cluster.is_running()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not cluster.is_running()
    assert not (cluster.data_dir / "postmaster.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user "
                    "(postgres), which may be unable to enter the checkout")
def test_serve_runs_from_a_checkout_the_postgres_user_cannot_enter() -> None:
    private = Path(tempfile.mkdtemp(prefix="ciphervec-private-"))  # mode 0700, like /root
    shared_existed = SHARED_CLUSTERS.exists()
    placed: Path | None = None
    try:
        with serving_embedded(private / ".ciphervec") as (process, stderr):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            stderr.seek(0)
            said = re.search(r"Embedded PostgreSQL running at \S+ \(data directory (\S+)\)",
                             stderr.read())
        assert said is not None
        placed = Path(said.group(1))
        assert (placed / "PG_VERSION").is_file()
        assert not placed.is_relative_to(private)
        reach = LocalPostgres(placed).run_as_owner_args(["test", "-x", str(placed)])
        assert subprocess.run(reach, check=False).returncode == 0  # noqa: S603
        assert private.stat().st_mode & 0o777 == 0o700  # never loosened
        assert not (private / ".ciphervec" / "pg").exists()
    finally:
        shutil.rmtree(private)
        if placed is not None:
            LocalPostgres(placed).destroy()
        if not shared_existed and SHARED_CLUSTERS.exists():
            SHARED_CLUSTERS.rmdir()
