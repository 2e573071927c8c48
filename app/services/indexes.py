"""Index lifecycle: create, describe, list, delete, key rotation, and opening an index
for a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app import embeddings
from app.crypto.index_cipher import IndexCipher
from app.errors import BadRequest, Conflict, IndexExists, IndexNotFound, InvalidInput
from app.ivf.distance import Metric
from app.kms.index_keys import KeyChoice, StoredKey
from app.kms.providers import KeyContext
from app.services.context import ServiceContext
from app.store import indexes as repo
from app.store.indexes import IndexRow, NewKey


@dataclass(frozen=True, slots=True)
class OpenIndex:
    """An index row together with the cipher its key opened."""

    row: IndexRow
    cipher: IndexCipher


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What a client asks for when creating an index."""

    name: str
    index_key: bytes | None
    kms_name: str | None
    dimension: int | None
    metric: Metric
    embedding_model: str | None
    metadata_schema: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What describe reports."""

    name: str
    is_trained: bool
    dimension: int
    metric: str
    n_lists: int
    metadata_schema: dict[str, Any]


async def open_index(
    conn: AsyncConnection, ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> OpenIndex:
    """Find the tenant's index and unwrap its key: 404 if absent, 401 if the key is wrong."""
    return await open_row(ctx, await find_row(conn, tenant, name), index_key)


async def find_row(conn: AsyncConnection, tenant: str, name: str) -> IndexRow:
    """The tenant's index row, or 404."""
    row = await repo.find_index(conn, tenant, name)
    if row is None:
        raise IndexNotFound(name)
    return row


def key_context(row: IndexRow) -> KeyContext:
    """The identity every wrap of this index's DEK is bound to."""
    return KeyContext(index_id=row.id, tenant=row.tenant, index_name=row.name)


def stored_key(row: IndexRow) -> StoredKey:
    """The row's wrapped DEK and KMS blob fields."""
    return StoredKey(
        provider=row.key_provider, wrapped=row.wrapped_dek, kms_name=row.kms_name,
        key_id=row.kms_key_id, context=row.kms_context,
    )


async def open_row(ctx: ServiceContext, row: IndexRow, index_key: bytes | None) -> OpenIndex:
    """Unwrap an index row's key: 401 if a client key is missing or wrong, 400 if one is
    sent to a KMS-backed index, 503 if the KMS cannot be reached."""
    cipher = await ctx.keys.open(key_context(row), stored_key(row), index_key)
    return OpenIndex(row=row, cipher=cipher)


def _key_choice(index_key: bytes | None, kms_name: str | None) -> KeyChoice:
    """Exactly one of the two, worded as the reference words it."""
    if index_key is not None and kms_name is not None:
        raise BadRequest(f"index_key must not be supplied alongside kms_name='{kms_name}'")
    if index_key is None and kms_name is None:
        raise BadRequest("exactly one of kms_name or index_key must be supplied")
    return KeyChoice(index_key=index_key, kms_name=kms_name)


def _new_key(stored: StoredKey) -> NewKey:
    return NewKey(
        key_provider=stored.provider, wrapped_dek=stored.wrapped, kms_name=stored.kms_name,
        kms_key_id=stored.key_id, kms_context=stored.context,
    )


async def create_index(ctx: ServiceContext, tenant: str, spec: IndexSpec) -> None:
    """Create an empty index whose DEK is wrapped under the client's key or a KMS key.

    The KMS call happens before the transaction that inserts the row, so a
    KMS that fails leaves nothing behind (but a spent id) and no transaction
    waits on the network.
    """
    choice = _key_choice(spec.index_key, spec.kms_name)
    if choice.kms_name is not None:
        ctx.keys.registry.provider(choice.kms_name)  # 400 for an unknown entry, before any write
    model_name, dimension = _embedding_config(spec.embedding_model, spec.dimension)
    async with ctx.db.transaction() as conn:
        index_id = await repo.allocate_index_id(conn)
    stored = await ctx.keys.create(
        KeyContext(index_id=index_id, tenant=tenant, index_name=spec.name), choice
    )
    async with ctx.db.transaction() as conn:
        row = IndexRow(
            id=index_id,
            tenant=tenant,
            name=spec.name,
            dimension=dimension or 0,
            metric=spec.metric.value,
            key_provider=stored.provider,
            wrapped_dek=stored.wrapped,
            embedding_model=model_name,
            metadata_schema=spec.metadata_schema,
            active_version=0,
            n_lists=1,
            kms_name=stored.kms_name,
            kms_key_id=stored.key_id,
            kms_context=stored.context,
        )
        if not await repo.insert_index(conn, row):
            raise IndexExists(spec.name)


def _embedding_config(name: str | None, dimension: int | None) -> tuple[str | None, int | None]:
    """The model an index embeds text with (canonical name) and the dimension it fixes.

    An empty name means no model, as in the reference. Unknown model: 400;
    known but not installed here: 422; explicit dimension not the model's: 422.
    """
    if not name:
        return None, dimension
    model = embeddings.find_model(name)
    embeddings.require_installed(model)
    if dimension is not None and dimension != model.dimension:
        raise InvalidInput(
            f"dimension {dimension} does not match embedding model '{model.name}', "
            f"which produces {model.dimension}"
        )
    return model.name, model.dimension


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a key rotation, for the response."""

    provider: str
    key_version: int


async def rotate_key(
    ctx: ServiceContext,
    tenant: str,
    name: str,
    index_key: bytes | None,
    new_index_key: bytes | None,
    new_kms_name: str | None,
) -> Rotation:
    """Re-wrap the index's DEK under a new client key or KMS key; items are untouched.

    The current key must open the DEK. The new wrap is stored only if no
    other rotation happened meanwhile (409 otherwise), and every process
    drops its cached view of the index on next use, so the old key is
    refused everywhere from the next request on.
    """
    choice = _key_choice(new_index_key, new_kms_name)
    async with ctx.db.transaction() as conn:
        row = await find_row(conn, tenant, name)
    stored = await ctx.keys.rewrap(key_context(row), stored_key(row), index_key, choice)
    async with ctx.db.transaction() as conn:
        if not await repo.rewrap_index(conn, row.id, row.key_version, _new_key(stored)):
            raise Conflict(f"index '{name}' was changed by a concurrent key rotation; try again")
    ctx.keys.ciphers.forget(row.id)
    return Rotation(provider=stored.provider, key_version=row.key_version + 1)


async def describe_index(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> IndexInfo:
    """The index's configuration and training state."""
    async with ctx.db.transaction() as conn:
        row = await find_row(conn, tenant, name)
    await open_row(ctx, row, index_key)  # outside the transaction: it may call the KMS
    return IndexInfo(
        name=row.name,
        is_trained=row.active_version > 0,
        dimension=row.dimension,
        metric=row.metric,
        n_lists=row.n_lists,
        metadata_schema=row.metadata_schema or {},
    )


async def list_indexes(ctx: ServiceContext, tenant: str) -> list[str]:
    """The tenant's index names."""
    async with ctx.db.transaction() as conn:
        return await repo.list_index_names(conn, tenant)


async def delete_index(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> None:
    """Delete an index and every item in it; the key must open it."""
    async with ctx.db.transaction() as conn:
        row = await find_row(conn, tenant, name)
    opened = await open_row(ctx, row, index_key)
    async with ctx.db.transaction() as conn:
        if not await repo.delete_index(conn, opened.row.id):
            raise IndexNotFound(name)
    ctx.keys.ciphers.forget(opened.row.id)
    ctx.blocks.forget_index(opened.row.id)
    # Its user keys went with it (ON DELETE CASCADE); other processes notice
    # within the API key cache TTL.
    ctx.api_keys.forget_index(tenant, name)
