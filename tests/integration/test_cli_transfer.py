"""`ciphervec import` and `ciphervec export` against the test database, checked over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from app.cli import cli

Invoke = Callable[..., Awaitable[Result]]


@pytest.fixture
def invoke(runner: CliRunner, index: dict[str, Any]) -> Invoke:
    """Run a `ciphervec` command on the test index (in a thread: it runs its own loop)."""

    async def run(*args: str | Path, key: str | None = None) -> Result:
        argv = [str(a) for a in args] + [
            "--index", index["index_name"], "--tenant", "tests",
            "--index-key", key or index["index_key"],
        ]
        return await asyncio.to_thread(lambda: runner.invoke(cli, argv))

    return run


def _jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"doc-{i:03d}", "vector": [float(i), 1.0, -1.0, 0.5],
         "contents": f"text {i}" if i % 2 else None,
         "metadata": {"n": i, "tag": "even" if i % 2 == 0 else "odd"} if i % 3 else None}
        for i in range(n)
    ]


async def _ids(client: httpx.AsyncClient, index: dict[str, Any]) -> list[str]:
    listed = (await client.post("/vectors/list_ids", json=index)).json()
    count = (await client.post("/vectors/num_vectors", json=index)).json()["result"]
    assert listed["count"] == count
    return sorted(listed["ids"])


async def test_import_npy_uses_row_numbers_as_ids(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", np.random.default_rng(1).normal(size=(25, 4)).astype(np.float32))
    result = await invoke("import", tmp_path / "v.npy", "--batch-size", "10")
    assert result.exit_code == 0, result.output
    assert await _ids(client, index) == sorted(str(i) for i in range(25))
    assert not (tmp_path / "v.npy.progress").exists()


async def test_import_npy_takes_ids_from_an_ids_file(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("alpha\nbeta\ngamma\n")
    result = await invoke("import", tmp_path / "v.npy", "--ids", tmp_path / "ids.txt")
    assert result.exit_code == 0, result.output
    got = (await client.post(
        "/vectors/get", json={**index, "ids": ["beta"], "include": ["vector"]}
    )).json()["results"]
    assert got == [{"id": "beta", "vector": [4.0, 5.0, 6.0, 7.0]}]


async def test_import_jsonl_stores_contents_and_metadata(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    result = await invoke("import", _jsonl(tmp_path / "items.jsonl", _items(20)))
    assert result.exit_code == 0, result.output
    got = (await client.post(
        "/vectors/get", json={**index, "ids": ["doc-007"], "include": ["contents", "metadata"]}
    )).json()["results"]
    assert got == [{"id": "doc-007", "contents": "text 7", "metadata": {"n": 7, "tag": "odd"}}]


async def test_import_stopped_early_resumes_where_it_stopped(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "items.jsonl", _items(100))
    first = await invoke("import", source, "--batch-size", "10", "--limit", "35")
    assert first.exit_code == 0, first.output
    assert len(await _ids(client, index)) == 35
    assert json.loads((tmp_path / "items.jsonl.progress").read_text())["done"] == 35

    second = await invoke("import", source, "--batch-size", "10")
    assert second.exit_code == 0, second.output
    assert "Resumed after record 35" in second.output
    assert "Imported 65 items" in second.output
    assert await _ids(client, index) == sorted(item["id"] for item in _items(100))
    assert not (tmp_path / "items.jsonl.progress").exists()


async def test_import_failing_midway_resumes_after_the_last_stored_batch(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    items = _items(60)
    lines = [json.dumps(item) for item in items]
    lines[44] = '{"id": "doc-044", "vector": "not a vector"}'
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(lines) + "\n")

    failed = await invoke("import", source, "--batch-size", "10")
    assert failed.exit_code == 1
    assert "items.jsonl:45: vector" in failed.output
    assert "Traceback" not in failed.output
    assert len(await _ids(client, index)) == 40

    lines[44] = json.dumps(items[44])
    source.write_text("\n".join(lines) + "\n")
    resumed = await invoke("import", source, "--batch-size", "10")
    assert resumed.exit_code == 0, resumed.output
    assert "Imported 20 items" in resumed.output
    assert await _ids(client, index) == sorted(item["id"] for item in items)


async def test_import_with_a_wrong_index_key_is_refused_cleanly(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], tmp_path: Path
) -> None:
    result = await invoke("import", _jsonl(tmp_path / "i.jsonl", _items(3)), key="cd" * 32)
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output
    assert await _ids(client, index) == []


async def test_import_of_vectors_of_another_dimension_is_refused(
    invoke: Invoke, tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", np.zeros((5, 3), dtype=np.float32))
    result = await invoke("import", tmp_path / "v.npy")
    assert result.exit_code == 1
    assert "dimension 3" in result.output


async def test_export_gives_back_what_was_imported(
    invoke: Invoke, tmp_path: Path
) -> None:
    items = _items(30)
    assert (await invoke("import", _jsonl(tmp_path / "in.jsonl", items))).exit_code == 0
    result = await invoke("export", "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(exported, key=lambda item: str(item["id"])) == items


async def test_export_streams_to_stdout_when_no_file_is_given(
    invoke: Invoke, tmp_path: Path
) -> None:
    assert (await invoke("import", _jsonl(tmp_path / "in.jsonl", _items(7)))).exit_code == 0
    result = await invoke("export")
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["id"] for line in result.stdout.splitlines()) == [
        f"doc-{i:03d}" for i in range(7)
    ]


async def test_import_refuses_a_malformed_index_key(invoke: Invoke, tmp_path: Path) -> None:
    result = await invoke("import", _jsonl(tmp_path / "i.jsonl", _items(3)), key="abc")
    assert result.exit_code == 2
    assert "64 hex characters" in result.output


async def test_import_refuses_an_unknown_file_type(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,vector\n")
    result = await invoke("import", tmp_path / "items.csv")
    assert result.exit_code == 1
    assert "expected a .npy or .jsonl file" in result.output
