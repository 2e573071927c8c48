"""Index lifecycle: create, describe, list, delete, and opening an index for a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app import embeddings
from app.crypto.index_cipher import IndexCipher
from app.errors import BadRequest, IndexExists, IndexNotFound, InvalidInput, WrongIndexKey
from app.ivf.distance import Metric
from app.kms.sdk import new_wrapped_data_key
from app.services.context import ServiceContext
from app.store import indexes as repo
from app.store.indexes import IndexRow

SDK_PROVIDER = "sdk"


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
    row = await repo.find_index(conn, tenant, name)
    if row is None:
        raise IndexNotFound(name)
    return open_row(ctx, row, index_key)


def open_row(ctx: ServiceContext, row: IndexRow, index_key: bytes | None) -> OpenIndex:
    """Unwrap an index row's key: 401 if the key is missing or wrong."""
    if index_key is None:
        raise WrongIndexKey(f"index_key is required for index '{row.name}'")
    cipher = ctx.ciphers.open(row.id, row.name, row.wrapped_dek, index_key)
    return OpenIndex(row=row, cipher=cipher)


async def create_index(ctx: ServiceContext, tenant: str, spec: IndexSpec) -> None:
    """Create an empty index whose DEK is wrapped under the client's key."""
    if spec.index_key is not None and spec.kms_name is not None:
        raise BadRequest(f"index_key must not be supplied alongside kms_name='{spec.kms_name}'")
    if spec.kms_name is not None:
        raise BadRequest(f"Unknown KMS registry entry: '{spec.kms_name}'. Known: []")
    if spec.index_key is None:
        raise BadRequest("exactly one of kms_name or index_key must be supplied")
    model_name, dimension = _embedding_config(spec.embedding_model, spec.dimension)
    async with ctx.db.transaction() as conn:
        index_id = await repo.allocate_index_id(conn)
        row = IndexRow(
            id=index_id,
            tenant=tenant,
            name=spec.name,
            dimension=dimension or 0,
            metric=spec.metric.value,
            key_provider=SDK_PROVIDER,
            wrapped_dek=new_wrapped_data_key(spec.index_key, index_id),
            embedding_model=model_name,
            metadata_schema=spec.metadata_schema,
            active_version=0,
            n_lists=1,
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


async def describe_index(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> IndexInfo:
    """The index's configuration and training state."""
    async with ctx.db.transaction() as conn:
        row = (await open_index(conn, ctx, tenant, name, index_key)).row
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
        opened = await open_index(conn, ctx, tenant, name, index_key)
        if not await repo.delete_index(conn, opened.row.id):
            raise IndexNotFound(name)
    ctx.ciphers.forget(opened.row.id)
    ctx.blocks.forget_index(opened.row.id)
