"""`ciphervec import --pgvector-url`: items read from a real PostgreSQL with pgvector
(tests/support/pgvector.py) and checked through the service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from app.cli import cli
from tests.support.pgvector import pgvector_cluster
from tests.support.process import ciphervec_command

Invoke = Callable[..., Awaitable[Result]]
Rows = list[tuple[int, list[float] | None, str | None, str | None]]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    """A source database with the vector extension, for this module."""
    with pgvector_cluster() as url:
        yield url


@pytest.fixture
def invoke(runner: CliRunner, index: dict[str, Any], tmp_path: Path) -> Invoke:
    """Run `ciphervec import` from the pgvector source into the test index."""

    async def run(url: str, *args: str) -> Result:
        argv = ["import", "--pgvector-url", url, *args,
                "--index", index["index_name"], "--tenant", "tests",
                "--index-key", index["index_key"],
                "--progress-file", str(tmp_path / "import.progress")]
        return await asyncio.to_thread(lambda: runner.invoke(cli, argv))

    return run


def _rows(n: int, seed: int = 0) -> Rows:
    """Rows (id, vector, contents, metadata JSON) with float32-exact vectors; some
    contents and metadata NULL."""
    vectors = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return [
        (i, [float(v) for v in vectors[i - 1]],
         f"text {i}" if i % 2 else None,
         json.dumps({"n": i, "tag": f"t{i % 3}"}) if i % 3 else None)
        for i in range(1, n + 1)
    ]


async def _table(url: str, column_type: str, rows: Rows) -> str:
    """A new table (id int, embedding COLUMN_TYPE, body text, meta jsonb) holding rows."""
    name = f"items_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, embedding {column_type}, "
                           "body text, meta jsonb)")
        await conn.executemany(
            f"INSERT INTO {name} VALUES ($1, $2::float8[]::{column_type}, $3, $4::jsonb)",  # noqa: S608
            rows,
        )
    finally:
        await conn.close()
    return name


async def _get(client: httpx.AsyncClient, index: dict[str, Any], ids: list[str]
               ) -> dict[str, dict[str, Any]]:
    response = await client.post("/vectors/get", json={
        **index, "ids": ids, "include": ["vector", "contents", "metadata"]})
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["results"]}


async def _ids(client: httpx.AsyncClient, index: dict[str, Any]) -> list[str]:
    listed = (await client.post("/vectors/list_ids", json=index)).json()
    count = (await client.post("/vectors/num_vectors", json=index)).json()["result"]
    assert listed["count"] == count
    return sorted(listed["ids"])


def _expected_vector(values: list[float], column_type: str) -> np.ndarray[Any, Any]:
    exact = np.asarray(values, dtype=np.float64)
    if column_type.startswith("halfvec"):
        return exact.astype(np.float16).astype(np.float32)
    return exact.astype(np.float32)


@pytest.mark.parametrize("column_type", ["vector(4)", "halfvec(4)", "real[]",
                                         "double precision[]"])
async def test_each_vector_column_type_imports_intact(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
    column_type: str, tmp_path: Path,
) -> None:
    rows = _rows(45)
    if column_type == "double precision[]":  # values float32 cannot hold: rounded like a cast
        rows = [(i, [v + 1e-9 for v in vector or []], c, m) for i, vector, c, m in rows]
    table = await _table(pgvector_url, column_type, rows)
    result = await invoke(pgvector_url, "--table", table, "--contents-column", "body",
                          "--metadata-column", "meta", "--batch-size", "10")
    assert result.exit_code == 0, result.output
    assert "Read 45 of 45 rows, imported 45 items" in result.output
    got = await _get(client, index, [str(row[0]) for row in rows])
    assert len(got) == 45
    for item_id, vector, contents, metadata in rows:
        item = got[str(item_id)]
        assert vector is not None
        expected = _expected_vector(vector, column_type)
        assert np.array_equal(np.asarray(item["vector"], dtype=np.float32), expected)
        assert item["contents"] == (contents or "")  # the wire's "no contents", as CyborgDB's
        assert item["metadata"] == (json.loads(metadata) if metadata else {})
    assert not (tmp_path / "import.progress").exists()


async def test_a_query_source_imports_what_it_selects(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
) -> None:
    table = await _table(pgvector_url, "vector(4)", _rows(30))
    query = f"SELECT id * 10 AS key, embedding AS v, meta FROM {table} WHERE id % 2 = 0"  # noqa: S608
    result = await invoke(pgvector_url, "--query", query, "--id-column", "key",
                          "--vector-column", "v", "--metadata-column", "meta",
                          "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert await _ids(client, index) == sorted(str(i * 10) for i in range(2, 31, 2))
    got = await _get(client, index, ["40", "60"])
    assert got["40"]["metadata"] == {"n": 4, "tag": "t1"}
    assert got["60"]["metadata"] == {}  # NULL metadata
    assert got["40"]["contents"] == ""  # no contents column


async def test_unusable_rows_are_skipped_and_counted(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
) -> None:
    rows = _rows(12)
    table = await _table(pgvector_url, "real[]", rows)
    conn = await asyncpg.connect(pgvector_url)
    try:
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
                           "ALTER id DROP NOT NULL")
        await conn.execute(f"UPDATE {table} SET embedding = NULL WHERE id = 3")  # noqa: S608
        await conn.execute(f"UPDATE {table} SET embedding = '{{1,2,3}}' WHERE id = 5")  # noqa: S608
        await conn.execute(f"UPDATE {table} SET embedding = '{{1,NULL,3,4}}' WHERE id = 7")  # noqa: S608
        await conn.execute(f"UPDATE {table} SET embedding = '{{1,NaN,3,4}}' WHERE id = 9")  # noqa: S608
        await conn.execute(f"INSERT INTO {table} VALUES (NULL, '{{1,2,3,4}}', NULL, NULL)")  # noqa: S608
    finally:
        await conn.close()
    result = await invoke(pgvector_url, "--table", table, "--batch-size", "5")
    assert result.exit_code == 0, result.output
    assert "Read 12 of 12 rows, imported 8 items into" in result.output
    assert "skipped 4." in result.output
    assert "skipped '3': NULL vector" in result.output
    assert "skipped '5': dimension 3, not 4" in result.output
    assert "skipped '7': NULL in the vector" in result.output
    assert "skipped '9': NaN or infinite value in the vector" in result.output
    assert "1 rows with a NULL id were not read" in result.output
    imported = [i for i in range(1, 13) if i not in (3, 5, 7, 9)]
    assert await _ids(client, index) == sorted(str(i) for i in imported)


async def test_a_limited_import_resumes_from_the_last_id_in_id_order(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
    tmp_path: Path,
) -> None:
    table = await _table(pgvector_url, "vector(4)", _rows(25))
    first = await invoke(pgvector_url, "--table", table, "--batch-size", "4", "--limit", "10")
    assert first.exit_code == 0, first.output
    state = json.loads((tmp_path / "import.progress").read_text())
    # Ids in the column's own order (integers), not as text ("10" < "2").
    assert (state["last_id"], state["read"], state["imported"]) == ("10", 10, 10)
    second = await invoke(pgvector_url, "--table", table, "--batch-size", "4")
    assert second.exit_code == 0, second.output
    assert "Read 25 of 25 rows, imported 25 items" in second.output
    assert await _ids(client, index) == sorted(str(i) for i in range(1, 26))
    assert not (tmp_path / "import.progress").exists()


async def test_a_killed_import_resumes_with_every_item_exactly_once(
    client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str, database_url: str,
    tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No training run in the middle: this test is about the items, not the index.
    monkeypatch.setenv("CIPHERVEC_AUTO_TRAIN", "false")
    n = 20_000
    table = await _table(pgvector_url, "vector(4)", _rows(n))
    progress = tmp_path / "import.progress"
    env = {**os.environ, "CIPHERVEC_DATABASE_URL": database_url,
           "CIPHERVEC_INDEX_KEY": index["index_key"]}
    process = subprocess.Popen(
        ciphervec_command("import", "--pgvector-url", pgvector_url, "--table", table,
                          "--index", index["index_name"], "--tenant", "tests",
                          "--batch-size", "200", "--progress-file", str(progress)),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if progress.exists() and json.loads(progress.read_text())["read"] >= 2_000:
            break
        assert process.poll() is None, "the import ended before it could be killed"
        await asyncio.sleep(0.01)
    process.kill()
    process.wait(timeout=10)
    stored = json.loads(progress.read_text())["read"]
    assert 2_000 <= stored < n

    resumed = await invoke(pgvector_url, "--table", table, "--batch-size", "1000")
    assert resumed.exit_code == 0, resumed.output
    assert "Resumed from the progress file" in resumed.output
    assert f"Read {n} of {n} rows, imported {n} items" in resumed.output
    assert await _ids(client, index) == sorted(str(i) for i in range(1, n + 1))
    sample = await _get(client, index, ["1", str(stored), str(stored + 1), str(n)])
    assert len(sample) == 4


@pytest.mark.parametrize(("args", "message"), [
    (["--table", "no_such_table"], "table 'no_such_table' does not exist"),
    (["--table", "{table}", "--vector-column", "nope"],
     "vector column 'nope' is not in the source (its columns: id, embedding, body, meta)"),
    (["--table", "{table}", "--id-column", "nope"], "id column 'nope' is not in the source"),
    (["--table", "{table}", "--vector-column", "body"],
     "vector column 'body' is of type text; expected one of vector, halfvec"),
    (["--table", "{table}", "--metadata-column", "body"],
     "metadata column 'body' is of type text; expected json or jsonb"),
    (["--query", "SELECT nonsense FROM"], "the source query fails: syntax error"),
    (["--table", "{table}", "--query", "SELECT 1"], "give exactly one of --table and --query"),
    (["--table", "{wide}"], "column 'embedding' holds vectors of dimension 5 (id '1'); "
                            "index '{index}' has 4"),
])
async def test_an_unusable_source_is_refused_before_anything_is_written(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
    args: list[str], message: str,
) -> None:
    table = await _table(pgvector_url, "vector(4)", _rows(3))
    wide = await _table(pgvector_url, "vector(5)",
                        [(1, [1.0, 2.0, 3.0, 4.0, 5.0], None, None)])
    names = {"table": table, "wide": wide, "index": index["index_name"]}
    result = await invoke(pgvector_url, *[arg.format(**names) for arg in args])
    assert result.exit_code == 1
    assert f"Error: {message.format(**names)}" in result.output
    assert "Traceback" not in result.output
    assert await _ids(client, index) == []


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://someone:secret-pw@127.0.0.1:1/db",
     "cannot connect to postgresql://someone:***@127.0.0.1:1/db: "),
    ("not a url", "cannot connect to not a url: invalid DSN"),
    ("postgresql://u:secret-pw@127.0.0.1:99999/db", "cannot connect to postgresql://u:***@"),
    ("{source}_nope", 'database "source_nope" does not exist'),
])
async def test_a_bad_url_is_one_line_with_the_password_hidden(
    invoke: Invoke, client: httpx.AsyncClient, index: dict[str, Any], pgvector_url: str,
    url: str, message: str,
) -> None:
    result = await invoke(url.format(source=pgvector_url), "--table", "items")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "secret-pw" not in result.output
    assert await _ids(client, index) == []


async def test_a_progress_file_of_another_source_is_refused(
    invoke: Invoke, pgvector_url: str, tmp_path: Path,
) -> None:
    table = await _table(pgvector_url, "vector(4)", _rows(10))
    other = await _table(pgvector_url, "vector(4)", _rows(10))
    first = await invoke(pgvector_url, "--table", table, "--batch-size", "4", "--limit", "4")
    assert first.exit_code == 0, first.output
    second = await invoke(pgvector_url, "--table", other)
    assert second.exit_code == 1
    assert "records an import from another source" in second.output
    assert "--restart" in second.output
