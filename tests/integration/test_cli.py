"""The `ciphervec` commands keys, bench and serve against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.support.server import free_port


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
