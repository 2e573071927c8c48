"""Bulk import into an existing index (.npy, .jsonl or a pgvector table, resumable) and
export to JSONL.

Both run the service layer in this process against the database, as
`ciphervec keys` does, rather than calling a server over HTTP: the upsert,
embedding and decryption code is the service's own, no running server or
API key is needed, no request size limit splits the work, and export reads
every item page by page in one snapshot (over HTTP, `list_ids` would return
all ids at once and each page would need a separate `get`).

Resuming: after a batch's upsert has committed, the number of input records
consumed so far is written to a progress file (default `<input>.progress`).
A re-run skips that many records. A batch cut short by an interruption was
never recorded, so it is sent again in full; that is safe because an upsert
overwrites by id. The progress file is removed once the import completes.

A pgvector source (app.ops.pgvector_source reads it) is resumed by id instead:
its rows are read in id order, and the progress file holds the last id stored,
the counts so far and a description of the source, so that a re-run with
another table, query or column list is refused rather than mixed in.

JSONL lines are `{"id", "vector", "contents", "metadata"}` objects (the
fields of an upsert item; `vector` may be left out for an index with an
embedding model, `contents` and `metadata` may be null or absent). Export
writes the same shape, so an export imports back unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
from pydantic import ValidationError

from app.engine.payload import ItemPayload
from app.ivf.vectors import Matrix
from app.ops.pgvector_source import SKIPPED_SHOWN, PgvectorSource, SourceBatch
from app.schemas.vectors import VectorItem
from app.services import export, indexes
from app.services import vectors as vector_service
from app.services.context import ServiceContext


class TransferFailed(Exception):
    """The input or the progress file cannot be used; `str()` says why, for the user."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One upsert's worth of items and how many input records the import has consumed
    once it is stored."""

    end: int
    batch: vector_service.ItemBatch


class Source(Protocol):
    """An input file: its record count and its records from a position on, in batches."""

    path: Path
    total: int

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Chunk]:
        """Records [start, stop) in upserts of at most `size` items."""
        ...


class NpySource:
    """Rows of a 2-d .npy array (memory-mapped); ids from an ids file or row numbers."""

    def __init__(self, path: Path, ids_path: Path | None = None) -> None:
        self.path = path
        try:
            self.matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TransferFailed(f"{path}: not a readable .npy array ({exc})") from exc
        if self.matrix.ndim != 2 or self.matrix.dtype.kind not in "fiu":
            raise TransferFailed(
                f"{path}: expected a 2-d array of numbers, got shape {self.matrix.shape} "
                f"of {self.matrix.dtype}"
            )
        self.total = int(self.matrix.shape[0])
        self.dimension = int(self.matrix.shape[1])
        self.ids = _read_ids(ids_path, self.total) if ids_path else None

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Chunk]:
        for begin in range(start, stop, size):
            end = min(begin + size, stop)
            vectors: Matrix = np.ascontiguousarray(self.matrix[begin:end], dtype=np.float32)
            ids = self.ids[begin:end] if self.ids else [str(row) for row in range(begin, end)]
            n = end - begin
            yield Chunk(end, vector_service.ItemBatch(ids, vectors, [None] * n, [None] * n))


def _read_ids(path: Path, expected: int) -> list[str]:
    try:
        ids = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferFailed(f"{path}: cannot read ids ({exc})") from exc
    if ids and not ids[-1]:
        ids.pop()
    if len(ids) != expected:
        raise TransferFailed(f"{path}: {len(ids)} ids for {expected} vectors")
    return ids


class JsonlSource:
    """One item per line; blank lines are skipped (but counted as records)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as lines:
            self.total = sum(1 for _ in lines)

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Chunk]:
        with self.path.open(encoding="utf-8") as lines:
            try:
                for _ in itertools.islice(lines, start):
                    pass
                items: list[VectorItem] = []
                line_no = start
                for line_no, line in enumerate(itertools.islice(lines, stop - start), start + 1):
                    if line.strip():
                        items.append(self._parse(line, line_no))
                    if len(items) == size:
                        yield Chunk(line_no, _batch(items))
                        items = []
            except UnicodeDecodeError as exc:
                raise TransferFailed(f"{self.path}: not UTF-8 text ({exc})") from exc
            if items:
                yield Chunk(line_no, _batch(items))

    def _parse(self, line: str, line_no: int) -> VectorItem:
        try:
            return VectorItem.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'line'}: {error['msg']}"
                for error in exc.errors()[:3]
            )
            raise TransferFailed(f"{self.path}:{line_no}: {problems}") from exc


def _batch(items: Sequence[VectorItem]) -> vector_service.ItemBatch:
    return vector_service.ItemBatch(
        ids=[item.id for item in items],
        vectors=[item.vector for item in items],
        contents=[item.contents for item in items],
        metadata=[item.metadata for item in items],
    )


def open_source(path: Path, ids_path: Path | None = None) -> Source:
    """The reader for `path`, chosen by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return NpySource(path, ids_path)
    if ids_path is not None:
        raise TransferFailed("--ids applies to .npy input only; JSONL lines carry their ids")
    if suffix in (".jsonl", ".ndjson"):
        return JsonlSource(path)
    raise TransferFailed(f"{path}: unsupported input; expected a .npy or .jsonl file")


@dataclass(frozen=True, slots=True)
class KeysetProgress:
    """A keyset import so far: the last id stored (None before the first batch) and the
    rows read, items imported and rows skipped in all runs."""

    last_id: str | None = None
    read: int = 0
    imported: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class ProgressFile:
    """How far an import that has not completed yet got: the records consumed of a file,
    or the last id stored and the counts of a pgvector source."""

    path: Path

    @classmethod
    def beside(cls, source: Path) -> ProgressFile:
        """The default place: next to the input, named after it."""
        return cls(source.with_name(source.name + ".progress"))

    def load(self, tenant: str, index: str) -> int:
        """Records already imported into this index (0 without a progress file)."""
        state = self._read(tenant, index)
        if state is None:
            return 0
        if not isinstance(state.get("done"), int):
            raise TransferFailed(f"{self.path}: not a progress file of a file import")
        return int(state["done"])

    def save(self, tenant: str, index: str, done: int) -> None:
        """Record the records consumed so far."""
        self._write({"tenant": tenant, "index": index, "done": done})

    def load_keyset(self, tenant: str, index: str, source: str) -> KeysetProgress:
        """Where an import from `source` (described as SourceSpec.describe does) stopped."""
        state = self._read(tenant, index)
        if state is None:
            return KeysetProgress()
        if state.get("source") != source:
            raise TransferFailed(
                f"{self.path} records an import from another source "
                f"({state.get('source') or 'a file'}); pass --restart to start over"
            )
        try:
            return KeysetProgress(state["last_id"], int(state["read"]),
                                  int(state["imported"]), int(state["skipped"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransferFailed(f"{self.path}: not a ciphervec progress file") from exc

    def save_keyset(self, tenant: str, index: str, source: str, state: KeysetProgress) -> None:
        """Record the last id stored and the counts so far."""
        self._write({"tenant": tenant, "index": index, "source": source,
                     "last_id": state.last_id, "read": state.read,
                     "imported": state.imported, "skipped": state.skipped})

    def _read(self, tenant: str, index: str) -> dict[str, Any] | None:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TransferFailed(f"{self.path}: unreadable progress file ({exc})") from exc
        if not isinstance(state, dict):
            raise TransferFailed(f"{self.path}: not a ciphervec progress file")
        if (state.get("tenant"), state.get("index")) != (tenant, index):
            raise TransferFailed(
                f"{self.path} records an import into index '{state.get('index')}' of tenant "
                f"'{state.get('tenant')}'; pass --restart to start over"
            )
        return state

    def _write(self, state: dict[str, Any]) -> None:
        """Atomically: a crash leaves the old state or the new one."""
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(state))
        os.replace(partial, self.path)

    def clear(self) -> None:
        """Forget the progress (the import completed)."""
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """Where the import started and stopped, and what it wrote."""

    started_at: int
    stopped_at: int
    total: int
    items: int
    training_started: bool

    @property
    def complete(self) -> bool:
        return self.stopped_at >= self.total


async def import_items(
    ctx: ServiceContext,
    tenant: str,
    index: str,
    index_key: bytes,
    source: Source,
    progress: ProgressFile,
    *,
    batch_size: int,
    limit: int | None = None,
    on_batch: Callable[[int], None] = lambda done: None,
) -> ImportOutcome:
    """Upsert the source's records from where the progress file left off, `batch_size`
    per upsert, stopping after `limit` records; `on_batch` gets the records consumed."""
    info = await indexes.describe_index(ctx, tenant, index, index_key)
    if isinstance(source, NpySource) and info.dimension and source.dimension != info.dimension:
        raise TransferFailed(
            f"{source.path}: vectors have dimension {source.dimension}, "
            f"index '{index}' has {info.dimension}"
        )
    start = progress.load(tenant, index)
    stop_at = source.total if limit is None else min(source.total, start + limit)
    written, training = 0, False
    for chunk in source.chunks(start, stop_at, batch_size):
        outcome = await vector_service.upsert(ctx, tenant, index, index_key, chunk.batch)
        written += outcome.count
        training = training or outcome.training_message is not None
        progress.save(tenant, index, chunk.end)
        on_batch(chunk.end)
    # Records after the last chunk, if any, were blank lines.
    if stop_at >= source.total:
        progress.clear()
    else:
        progress.save(tenant, index, stop_at)
    return ImportOutcome(start, stop_at, source.total, written, training)


@dataclass(frozen=True, slots=True)
class PgvectorOutcome:
    """A pgvector import: the source's size, the counts of all runs so far, and the rows
    this run skipped (at most SKIPPED_SHOWN of them, with the reason)."""

    resumed: bool
    source_rows: int
    null_ids: int
    so_far: KeysetProgress
    skipped_examples: list[tuple[str, str]]
    complete: bool
    training_started: bool


async def import_pgvector(
    ctx: ServiceContext,
    tenant: str,
    index: str,
    index_key: bytes,
    source: PgvectorSource,
    progress: ProgressFile,
    *,
    batch_size: int,
    limit: int | None = None,
    on_batch: Callable[[int, int], None] = lambda read, total: None,
) -> PgvectorOutcome:
    """Upsert the source's rows in id order after the last id the progress file holds,
    `batch_size` per upsert, stopping after `limit` rows; `on_batch` gets the rows read
    and the source's row count."""
    info = await indexes.describe_index(ctx, tenant, index, index_key)
    described = source.spec.describe()
    state = progress.load_keyset(tenant, index, described)
    resumed = state.last_id is not None
    total, null_ids = await source.count()
    on_batch(state.read, total - null_ids)
    dimension = info.dimension
    examples: list[tuple[str, str]] = []
    training = False
    left = limit

    def next_read(after: str | None) -> asyncio.Task[SourceBatch]:
        size = batch_size if left is None else min(batch_size, left)
        return asyncio.create_task(source.read_after(after, size))

    # The next batch is read from the source while this one is stored.
    pending = next_read(state.last_id)
    try:
        while True:
            batch = await pending
            if not batch.rows:
                break
            if left is not None:
                left -= batch.rows
            if left != 0:
                pending = next_read(batch.last_id)
            if not dimension and batch.vectors:
                dimension = int(batch.vectors[0].size)
            _skip_other_dimensions(batch, dimension, source, first=state.last_id is None,
                                   index=index)
            if batch.ids:
                outcome = await vector_service.upsert(
                    ctx, tenant, index, index_key, vector_service.ItemBatch(
                        batch.ids, batch.matrix(), batch.contents, batch.metadata),
                )
                training = training or outcome.training_message is not None
            examples.extend(batch.skipped[: SKIPPED_SHOWN - len(examples)])
            state = KeysetProgress(batch.last_id, state.read + batch.rows,
                                   state.imported + len(batch.ids),
                                   state.skipped + len(batch.skipped))
            progress.save_keyset(tenant, index, described, state)
            on_batch(state.read, total - null_ids)
            if left == 0:
                break
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
    complete = left != 0
    if complete:
        progress.clear()
    return PgvectorOutcome(resumed, total, null_ids, state, examples, complete, training)


def _skip_other_dimensions(batch: SourceBatch, dimension: int, source: PgvectorSource, *,
                           first: bool, index: str) -> None:
    """Move rows whose vectors do not have the index's dimension to the skipped ones; if
    the very first row read does not, the column does not fit the index: an error."""
    spec = source.spec
    if first and batch.vectors and batch.vectors[0].size != dimension:
        raise TransferFailed(
            f"column {spec.vector_column!r} holds vectors of dimension "
            f"{batch.vectors[0].size} (id {batch.ids[0]!r}); index '{index}' has {dimension}"
        )
    keep = [row for row, vector in enumerate(batch.vectors) if vector.size == dimension]
    if len(keep) == len(batch.ids):
        return
    batch.skipped.extend(
        (batch.ids[row], f"dimension {vector.size}, not {dimension}")
        for row, vector in enumerate(batch.vectors) if vector.size != dimension
    )
    batch.ids = [batch.ids[row] for row in keep]
    batch.vectors = [batch.vectors[row] for row in keep]
    batch.contents = [batch.contents[row] for row in keep]
    batch.metadata = [batch.metadata[row] for row in keep]


async def finish_background_work(ctx: ServiceContext) -> None:
    """Wait for training an import set off, which closing the context would cancel."""
    while ctx.background:
        await asyncio.gather(*ctx.background, return_exceptions=True)


def item_json(item: ItemPayload) -> dict[str, Any]:
    """An item as one export line (the shape import reads)."""
    if item.vector is None:
        raise ValueError(f"item {item.id!r} was read without its vector")
    return {
        "id": item.id,
        "vector": item.vector.tolist(),
        "contents": item.contents,
        "metadata": item.metadata,
    }


async def export_items(
    ctx: ServiceContext, tenant: str, index: str, index_key: bytes, out: TextIO,
    on_page: Callable[[int], None] = lambda count: None,
) -> int:
    """Write every item of the index to `out` as JSONL, a page at a time; returns the count."""
    count = 0
    async for page in export.stream_items(ctx, tenant, index, index_key):
        out.writelines(
            json.dumps(item_json(item), ensure_ascii=False, separators=(",", ":")) + "\n"
            for item in page
        )
        count += len(page)
        on_page(count)
    out.flush()
    return count
