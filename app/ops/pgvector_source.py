"""Reading items out of a pgvector database (an external PostgreSQL), for `ciphervec import`.

This module owns the connection to that source database and every statement sent
to it: it checks the source (a table or a query, and its id, vector, contents and
metadata columns) before anything is read, counts its rows, and reads them in
batches by keyset pagination on the id column. It knows nothing of ciphervec's
own database; app.ops.transfer stores what it reads through the services.

Keyset pagination (`WHERE id > last ORDER BY id LIMIT n`) rather than one
server-side cursor: each batch is a short statement of its own, so a resumed
import starts from the last id it stored, with no transaction held open for the
length of the import. The last id is kept as text and cast back to the id
column's type in SQL, so any orderable id type resumes where it stopped.

Vectors leave the source as `array_send(col::real[])`, the binary form of a
float4 array, parsed here with numpy: pgvector casts vector and halfvec to real[]
(halfvec exactly, float16 being a subset of float32), double precision[] is
rounded to float32 as an index stores it, and no row costs one Python float
per component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np
import numpy.typing as npt
from pydantic_core import from_json

from app.ivf.vectors import Matrix

# The column types a vector may be read from, by asyncpg's type name.
VECTOR_TYPES = ("vector", "halfvec", "float4[]", "float8[]")
METADATA_TYPES = ("json", "jsonb")
# array_send's header for a one-dimensional array: ndim, has-nulls flag, element
# type, then length and lower bound; then a 4-byte length before each element.
_ARRAY_HEADER = 20
_ARRAY_ELEMENTS = np.dtype([("length", ">i4"), ("value", ">f4")])
Vector = npt.NDArray[np.float32]
# A row's vector, or None and why it cannot be imported.
ParsedVector = tuple[Vector | None, str]
# Skipped rows named in the summary; the count covers them all.
SKIPPED_SHOWN = 5


class SourceUnusable(Exception):
    """The source database, table, query or a column cannot be used; `str()` says why."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where the items are and which columns hold what."""

    url: str
    table: str | None
    query: str | None
    id_column: str
    vector_column: str
    contents_column: str | None = None
    metadata_column: str | None = None

    def describe(self) -> str:
        """The source as a progress file records it: the URL without its password."""
        what = f"table {self.table}" if self.table else f"query {self.query}"
        columns = [self.id_column, self.vector_column, self.contents_column,
                   self.metadata_column]
        return f"{redact_url(self.url)} {what} columns {columns}"


def redact_url(url: str) -> str:
    """The URL with its password (in the authority or a `password=` parameter) replaced,
    fit for messages and files."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        query = urlencode([(name, "***" if name == "password" else value)
                           for name, value in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparsable URL>"


@dataclass(slots=True)
class SourceBatch:
    """Rows read in one statement: the usable items column-wise, and the rest by id."""

    ids: list[str] = field(default_factory=list)
    vectors: list[Vector] = field(default_factory=list)
    contents: list[str | None] = field(default_factory=list)
    metadata: list[dict[str, Any] | None] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    last_id: str | None = None

    def matrix(self) -> Matrix:
        """The usable vectors as one float32 matrix."""
        return np.ascontiguousarray(np.stack(self.vectors))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class PgvectorSource:
    """An open, checked source: call `open`, then `count` and `read_after`, then `close`."""

    def __init__(self, spec: SourceSpec, conn: asyncpg.Connection, relation: str,
                 id_type: str) -> None:
        self.spec = spec
        self._conn = conn
        self._relation = relation
        self._id_type = id_type

    @classmethod
    async def open(cls, spec: SourceSpec) -> PgvectorSource:
        """Connect and check the source: every problem is a SourceUnusable, raised before
        a single row is read."""
        if (spec.table is None) == (spec.query is None):
            raise SourceUnusable("give exactly one of --table and --query")
        try:
            conn = await asyncpg.connect(spec.url, timeout=15)
        except (OSError, ValueError, OverflowError, TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            raise SourceUnusable(
                f"cannot connect to {redact_url(spec.url)}: {exc or type(exc).__name__}"
            ) from exc
        try:
            relation = await cls._from_clause(conn, spec)
            id_type = await cls._check_columns(conn, spec, relation)
        except BaseException:
            await conn.close()
            raise
        return cls(spec, conn, relation, id_type)

    @staticmethod
    async def _from_clause(conn: asyncpg.Connection, spec: SourceSpec) -> str:
        """What goes after FROM: the table's quoted name, or the query in parentheses."""
        if spec.query is not None:
            return f"({spec.query.strip().rstrip(';')})"
        # to_regclass reads a name as SQL does (schema-qualified, quoted or folded).
        try:
            name = await conn.fetchval("SELECT to_regclass($1)::text", spec.table)
        except asyncpg.PostgresError as exc:
            raise SourceUnusable(f"table {spec.table!r}: {exc}") from exc
        if name is None:
            raise SourceUnusable(f"table {spec.table!r} does not exist in the source database")
        return str(name)

    @staticmethod
    async def _check_columns(conn: asyncpg.Connection, spec: SourceSpec, relation: str) -> str:
        """Check the named columns exist and have usable types; returns the id's SQL type."""
        try:
            statement = await conn.prepare(
                f"SELECT * FROM {relation} AS source LIMIT 0"  # noqa: S608 - checked relation
            )
        except asyncpg.PostgresError as exc:
            raise SourceUnusable(f"the source query fails: {exc}") from exc
        types = {attribute.name: attribute.type for attribute in statement.get_attributes()}
        wanted = {"id": spec.id_column, "vector": spec.vector_column,
                  "contents": spec.contents_column, "metadata": spec.metadata_column}
        for role, column in wanted.items():
            if column is not None and column not in types:
                raise SourceUnusable(
                    f"{role} column {column!r} is not in the source (its columns: "
                    f"{', '.join(types)})"
                )
        vector_type = types[spec.vector_column].name
        if vector_type not in VECTOR_TYPES:
            raise SourceUnusable(
                f"vector column {spec.vector_column!r} is of type {vector_type}; expected "
                f"one of {', '.join(VECTOR_TYPES)}"
            )
        if spec.metadata_column is not None:
            metadata_type = types[spec.metadata_column].name
            if metadata_type not in METADATA_TYPES:
                raise SourceUnusable(
                    f"metadata column {spec.metadata_column!r} is of type {metadata_type}; "
                    "expected json or jsonb"
                )
        id_oid = types[spec.id_column].oid
        return str(await conn.fetchval("SELECT format_type($1::oid, NULL)", id_oid))

    async def close(self) -> None:
        """Disconnect from the source."""
        await self._conn.close()

    async def count(self) -> tuple[int, int]:
        """Rows in the source, and how many of them have a NULL id (never read)."""
        id_column = _quote(self.spec.id_column)
        row = await self._fetch_one(
            f"SELECT count(*), count(*) - count(source.{id_column}) "  # noqa: S608
            f"FROM {self._relation} AS source"
        )
        return int(row[0]), int(row[1])

    async def read_after(self, last_id: str | None, size: int) -> SourceBatch:
        """The next `size` rows in id order after `last_id` (from the start when None)."""
        spec = self.spec
        id_column = f"source.{_quote(spec.id_column)}"
        contents = (f"source.{_quote(spec.contents_column)}::text"
                    if spec.contents_column else "NULL")
        metadata = (f"source.{_quote(spec.metadata_column)}::text"
                    if spec.metadata_column else "NULL")
        position = (f"{id_column} IS NOT NULL" if last_id is None
                    else f"{id_column} > $2::text::{self._id_type}")
        sql = (
            f"SELECT {id_column}::text, "  # noqa: S608 - quoted names, checked relation
            f"array_send(source.{_quote(spec.vector_column)}::real[]), {contents}, {metadata} "
            f"FROM {self._relation} AS source WHERE {position} ORDER BY {id_column} LIMIT $1"
        )
        args: list[Any] = [size] if last_id is None else [size, last_id]
        try:
            records = await self._conn.fetch(sql, *args)
        except asyncpg.PostgresError as exc:
            raise SourceUnusable(f"reading the source failed: {exc}") from exc
        batch = SourceBatch()
        vectors = _parse_vectors([record[1] for record in records])
        for (item_id, _, text, metadata_json), vector in zip(records, vectors, strict=True):
            batch.rows += 1
            batch.last_id = item_id
            _add_row(batch, item_id, vector, text, metadata_json)
        return batch

    async def _fetch_one(self, sql: str) -> Sequence[Any]:
        try:
            row = await self._conn.fetchrow(sql)
        except asyncpg.PostgresError as exc:
            raise SourceUnusable(f"reading the source failed: {exc}") from exc
        if row is None:
            raise SourceUnusable("the source answered no row to a count")
        return tuple(row)


def _add_row(batch: SourceBatch, item_id: str, parsed: ParsedVector, text: str | None,
             metadata_json: str | None) -> None:
    """Add one row to the batch, or to its skipped rows with the reason."""
    if not item_id:
        batch.skipped.append((item_id, "empty id"))
        return
    vector, problem = parsed
    if vector is None:
        batch.skipped.append((item_id, problem))
        return
    metadata = None if metadata_json is None else from_json(metadata_json)
    if metadata is not None and not isinstance(metadata, dict):
        batch.skipped.append((item_id, "metadata is not a JSON object"))
        return
    batch.ids.append(item_id)
    batch.vectors.append(vector)
    batch.contents.append(text)
    batch.metadata.append(metadata)


def _parse_vectors(blobs: Sequence[bytes | None]) -> list[ParsedVector]:
    """_parse_vector of each blob, with one numpy call per distinct length for the rows
    that are plain one-dimensional arrays of finite numbers (nearly all of them); the
    others, and any blob that only looks like one, go through _parse_vector."""
    parsed: list[ParsedVector | None] = [None] * len(blobs)
    by_length: dict[int, list[int]] = {}
    for row, blob in enumerate(blobs):
        if blob is not None and len(blob) > _ARRAY_HEADER:
            by_length.setdefault(len(blob), []).append(row)
    for length, rows in by_length.items():
        dimension, odd = divmod(length - _ARRAY_HEADER, _ARRAY_ELEMENTS.itemsize)
        if odd:
            continue
        layout = np.dtype([("ndim", ">i4"), ("has_nulls", ">i4"), ("header", ">i4", (3,)),
                           ("elements", _ARRAY_ELEMENTS, (dimension,))])
        table = np.frombuffer(b"".join(blobs[row] or b"" for row in rows), dtype=layout)
        values = table["elements"]["value"].astype(np.float32)
        plain = ((table["ndim"] == 1) & (table["has_nulls"] == 0)
                 & np.isfinite(values).all(axis=1))
        for position, row in enumerate(rows):
            if plain[position]:
                parsed[row] = (values[position], "")
    return [
        done if done is not None else _parse_vector(blob)
        for done, blob in zip(parsed, blobs, strict=True)
    ]


def _parse_vector(data: bytes | None) -> ParsedVector:
    """A float32 vector from array_send's bytes, or None and why it is unusable."""
    if data is None:
        return None, "NULL vector"
    ndim, has_nulls = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if ndim != 1:
        return None, "empty vector" if ndim == 0 else f"{ndim}-dimensional array"
    if has_nulls:
        return None, "NULL in the vector"
    values = np.frombuffer(data, dtype=_ARRAY_ELEMENTS, offset=_ARRAY_HEADER)["value"]
    vector = values.astype(np.float32)
    if not np.isfinite(vector).all():
        return None, "NaN or infinite value in the vector"
    return vector, ""
