"""CyborgDB's own migration tool, `cyborgdb-migrate` 0.18 (PyPI), run unchanged
against ciphervec: its version check passes, and its headless CLI moves a local
ChromaDB collection into ciphervec item by item, checked through the official
client; and the index it creates for a dot product source (metric "dotproduct")
ranks by inner product."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from cyborgdb import Client
from cyborgdb_migrate.destination import CyborgDestination
from cyborgdb_migrate.models import VectorRecord
from cyborgdb_migrate.version_check import verify_server_version

from tests.support.vectors import varied_norms

N_ITEMS, DIMENSION = 2_500, 48


def test_the_tools_version_check_accepts_ciphervec(base_url: str) -> None:
    verify_server_version(base_url)


def _metadata(i: int) -> dict[str, Any]:
    """Every value type a ChromaDB collection stores."""
    return {"title": f"Dokument {i} · naïve café ✓", "n": i, "ratio": i / 7,
            "even": i % 2 == 0, "tags": [f"t{i % 3}", f"u{i % 5}"]}


def _chroma_collection(path: Path, name: str) -> dict[str, Any]:
    """A ChromaDB collection of N_ITEMS, as ChromaDB itself reads it back (it
    rounds some floats of metadata in their last digit)."""
    vectors = np.random.default_rng(5).normal(size=(N_ITEMS, DIMENSION)).astype(np.float32)
    ids = [f"chroma-{i}" for i in range(N_ITEMS)]
    collection = chromadb.PersistentClient(path=str(path)).create_collection(name)
    for start in range(0, N_ITEMS, 500):
        part = slice(start, start + 500)
        collection.add(
            ids=ids[part], embeddings=vectors[part],
            metadatas=[_metadata(i) for i in range(start, min(start + 500, N_ITEMS))],
            documents=[f"Ünïcödé text nº {i} — 東京 {i}" for i in range(start, start + 500)],
        )
    return dict(collection.get(include=["embeddings", "metadatas", "documents"]))


def test_a_chromadb_collection_migrates_intact_through_the_headless_cli(
    base_url: str, api_key: str, tmp_path: Path
) -> None:
    source = _chroma_collection(tmp_path / "chroma", "docs")
    index_name = f"migrated-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "migrate.toml"
    config.write_text(
        f'[source]\ntype = "chromadb"\nmode = "Local"\npath = "{tmp_path / "chroma"}"\n'
        f'index = "docs"\n\n[destination]\nhost = "{base_url}"\napi_key = "{api_key}"\n'
        f'index_name = "{index_name}"\ncreate_index = true\n\n[options]\nbatch_size = 500\n'
    )
    tool = Path(sys.executable).with_name("cyborgdb-migrate")
    run = subprocess.run(
        [str(tool), "--config", str(config), "--log-file", str(tmp_path / "migrate.log")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found = re.search(r"Generated encryption key \(hex\):\s*([0-9a-f]{64})", run.stderr)
    assert found, run.stderr
    index = Client(base_url, api_key=api_key).load_index(
        index_name, bytes.fromhex(found.group(1))
    )

    stored = index.get(ids=source["ids"], include=["vector", "contents", "metadata"])
    assert len(stored) == N_ITEMS
    by_id = {item["id"]: item for item in stored}
    for item_id, vector, metadata, document in zip(
        source["ids"], source["embeddings"], source["metadatas"], source["documents"], strict=True
    ):
        item = by_id[item_id]
        assert np.array_equal(np.asarray(item["vector"], dtype=np.float32), vector)
        assert item["metadata"] == metadata
        contents = item["contents"]
        assert (contents.decode() if isinstance(contents, bytes) else contents) == document


def test_the_tools_destination_creates_a_dotproduct_index_for_a_dot_product_source(
    base_url: str, api_key: str
) -> None:
    # The CLI passes a source's metric to CyborgDestination.create_index: a Qdrant
    # Dot, Milvus IP or Weaviate dot collection arrives as "dotproduct". No such
    # server runs here, so the tool's destination is driven as its CLI drives it.
    destination = CyborgDestination()
    destination.connect(base_url, api_key)
    key = Client.generate_key(save=False)
    name = f"migrated-dot-{uuid.uuid4().hex[:8]}"
    destination.create_index(name=name, dimension=16, index_key=key, metric="dotproduct")
    rows = varied_norms(1001, 16, seed=4)
    vectors, query = rows[:1000], rows[1000]
    for start in range(0, len(vectors), 250):
        destination.upsert_batch([
            VectorRecord(id=f"dot-{i}", vector=vectors[i].tolist())
            for i in range(start, start + 250)
        ])
    assert destination.get_count() == len(vectors)

    index = Client(base_url, api_key=api_key).load_index(name, key)
    assert index.metric == "dotproduct"
    hits = index.query(query_vectors=query.tolist(), top_k=5, include=["distance"])
    products = vectors.astype(np.float64) @ query.astype(np.float64)
    best = np.argsort(-products)[:5]
    assert [hit["id"] for hit in hits] == [f"dot-{i}" for i in best]
    assert [hit["distance"] for hit in hits] == pytest.approx(-products[best], rel=1e-6)
