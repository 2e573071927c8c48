"""Finding items by metadata alone (query_metadata): no vector, no distance.

The filter is answered from the encrypted metadata index when it has an
equality part (app.metadata_terms): its candidates' payloads are decrypted
and the whole filter applied. Otherwise every item is decrypted and tested.
Either way it reads one REPEATABLE READ snapshot, so an item overwritten
meanwhile is seen once, as it was. The matches are then ordered by a field
when asked and cut to `top_k`.

Unlike /query, which may post-filter on anything, the schema is enforced
here: a field declared `filterable: false` cannot be filtered on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from app.crypto.index_cipher import IndexCipher
from app.engine.cpu import run_cpu
from app.engine.postings import candidate_seqs, indexed_fields, merge_terms
from app.errors import InvalidFilter, InvalidInput
from app.filters import FilterError, Predicate, compile_filter
from app.metadata_terms import IsIndexed, filter_clauses
from app.services import bounds
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.services.vectors import open_payload
from app.store import items as item_repo
from app.store.items import ItemRow

# Candidates fetched from the item rows per statement.
_FETCH_SEQS = 10_000
# Payloads decrypted on the event loop at most (see app.engine.cpu).
_PAYLOADS_IN_PLACE = 200


@dataclass(frozen=True, slots=True)
class MetadataQuery:
    """One query_metadata request."""

    filters: Mapping[str, Any] | None
    top_k: int | None = None
    order_by: str | None = None
    ascending: bool = True
    text: str | None = None


async def query_metadata(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, spec: MetadataQuery
) -> list[str]:
    """The ids of the items matching the filter, ordered as asked, at most `top_k`."""
    if spec.text:
        raise InvalidInput("Full-text search needs an index with a full_text field")
    if spec.top_k is not None and spec.top_k > ctx.settings.max_top_k:
        raise InvalidInput(f"top_k must be at most {ctx.settings.max_top_k}")
    try:
        predicate = compile_filter(spec.filters or {})
    except FilterError as exc:
        raise InvalidFilter(f"Invalid filter: {exc}") from exc
    early_stop = spec.top_k if spec.order_by is None else None
    due: list[bytes] = []
    async with ctx.db.transaction(snapshot=True) as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        indexed = indexed_fields(opened.row.metadata_schema)
        _refuse_unfilterable(spec.filters, indexed)
        clauses = (
            filter_clauses(spec.filters, indexed) if opened.row.postings_complete else None
        )
        matches: list[tuple[str, Mapping[str, object]]] = []
        if clauses is not None:
            seqs, due = await candidate_seqs(conn, opened.cipher, clauses)
            for start in range(0, len(seqs), _FETCH_SEQS):
                rows = await item_repo.items_by_seqs(
                    conn, opened.row.id, seqs[start : start + _FETCH_SEQS].tolist()
                )
                matches += await _matching(opened.cipher, rows, predicate)
                if early_stop is not None and len(matches) >= early_stop:
                    break
        else:
            async for page in item_repo.stream_items(conn, opened.row.id):
                matches += await _matching(opened.cipher, page, predicate)
                if early_stop is not None and len(matches) >= early_stop:
                    break
    if due:
        ctx.spawn(asyncio.create_task(merge_terms(ctx, opened.cipher, due)))
    ids = _ordered(matches, spec.order_by, spec.ascending)[: spec.top_k]
    # Each id is a JSON string and a comma, in `ids` and in `results`.
    size = sum(2 * (len(i) + 3) + 8 for i in ids)
    if size > ctx.settings.max_response_bytes:
        raise bounds.answer_too_large(ctx.settings, size)
    return ids


def _refuse_unfilterable(filters: Mapping[str, Any] | None, indexed: IsIndexed) -> None:
    for field in _fields(filters or {}):
        if not indexed(field):
            raise InvalidFilter(f"Field '{field}' is not filterable (metadata_schema)")


def _fields(doc: Mapping[str, Any]) -> Iterator[str]:
    """Every field path a (compiled, so well formed) filter tests."""
    for key, value in doc.items():
        if key in ("$and", "$or", "$nor"):
            for child in value:
                yield from _fields(child)
        elif key == "$not":
            yield from _fields(value)
        else:
            yield key


async def _matching(
    cipher: IndexCipher, rows: Sequence[ItemRow], predicate: Predicate
) -> list[tuple[str, Mapping[str, object]]]:
    return await run_cpu(
        partial(_decrypt_and_test, cipher, rows, predicate), heavy=len(rows) > _PAYLOADS_IN_PLACE
    )


def _decrypt_and_test(
    cipher: IndexCipher, rows: Sequence[ItemRow], predicate: Predicate
) -> list[tuple[str, Mapping[str, object]]]:
    found: list[tuple[str, Mapping[str, object]]] = []
    for row in rows:
        item = open_payload(cipher, row)
        metadata = item.metadata or {}
        if predicate(metadata):
            found.append((item.id, metadata))
    return found


_ABSENT = object()


def _lookup(metadata: Mapping[str, object], path: str) -> object:
    value: object = metadata
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(part, _ABSENT)
    return value


def _sort_key(value: object) -> tuple[int, Any]:
    """Numbers, then strings, then booleans, then null (each in natural order)."""
    if isinstance(value, bool):
        return 2, value
    if isinstance(value, int | float):
        return 0, value
    if isinstance(value, str):
        return 1, value
    return 3, 0


def _ordered(
    matches: list[tuple[str, Mapping[str, object]]], order_by: str | None, ascending: bool
) -> list[str]:
    """Ids in `order_by` order (missing and non-scalar values last, in either
    direction; ties by id), or as found without it."""
    if order_by is None:
        return [item_id for item_id, _ in matches]
    present, missing = [], []
    for item_id, metadata in matches:
        value = _lookup(metadata, order_by)
        if value is _ABSENT or isinstance(value, Mapping | list):
            missing.append(item_id)
        else:
            present.append((_sort_key(value), item_id))
    present.sort(key=lambda entry: entry[1])
    present.sort(key=lambda entry: entry[0], reverse=not ascending)  # stable: ties by id
    return [item_id for _, item_id in present] + sorted(missing)
