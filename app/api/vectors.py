"""Routes of /v1/vectors: upsert, get, delete, list_ids, num_vectors, query, query_metadata."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.answers import json_answer
from app.api.deps import Caller, Context
from app.api.json_body import FastJsonRoute
from app.engine.payload import ItemPayload
from app.errors import BadRequest, InvalidInput
from app.ivf.vectors import Matrix, matrix_from_base64
from app.schemas.common import IndexOperationRequest, SuccessResponse
from app.schemas.vectors import (
    BinaryQueryRequest,
    BinaryUpsertRequest,
    DeleteRequest,
    GetRequest,
    GetResponse,
    ListIdsResponse,
    NumVectorsResponse,
    QueryKnobs,
    QueryMetadataRequest,
    QueryMetadataResponse,
    QueryRequest,
    QueryResponse,
    UpsertRequest,
    UpsertResponse,
)
from app.services import search
from app.services import vectors as service
from app.services.auth import Permission
from app.services.metadata_query import MetadataQuery, query_metadata

router = APIRouter(prefix="/vectors", tags=["vectors"], route_class=FastJsonRoute)

DEFAULT_TOP_K = 100


@router.post("/upsert", response_model=UpsertResponse, response_model_exclude_none=True)
async def upsert(body: UpsertRequest, ctx: Context, caller: Caller) -> UpsertResponse:
    """Insert or overwrite items given as JSON; items without a vector are embedded
    from their contents by the index's embedding model."""
    caller.authorize(body.index_name, Permission.WRITE)
    batch = service.ItemBatch(
        ids=[item.id for item in body.items],
        vectors=[item.vector for item in body.items],
        contents=[item.contents for item in body.items],
        metadata=[item.metadata for item in body.items],
    )
    outcome = await service.upsert(ctx, caller.tenant, body.index_name, body.key_bytes(), batch)
    return _upsert_response(outcome)


@router.post("/upsert_binary", response_model=UpsertResponse, response_model_exclude_none=True)
async def upsert_binary(
    body: BinaryUpsertRequest, ctx: Context, caller: Caller
) -> UpsertResponse:
    """Insert or overwrite items whose vectors come as base64 float32."""
    caller.authorize(body.index_name, Permission.WRITE)
    rows = body.batch
    vectors = matrix_from_base64(rows.vectors_b64, rows.dimension)
    n = len(rows.ids)
    if len(vectors) != n:
        raise InvalidInput(f"{n} ids but {len(vectors)} vectors")
    for name, column in (("metadata", rows.metadata), ("contents", rows.contents)):
        if column is not None and len(column) != n:
            raise InvalidInput(f"{n} ids but {len(column)} {name} entries")
    batch = service.ItemBatch(
        ids=rows.ids,
        vectors=vectors,
        contents=rows.contents or [None] * n,
        metadata=rows.metadata or [None] * n,
    )
    outcome = await service.upsert(ctx, caller.tenant, body.index_name, body.key_bytes(), batch)
    return _upsert_response(outcome)


def _upsert_response(outcome: service.UpsertOutcome) -> UpsertResponse:
    return UpsertResponse(
        message=f"Upserted {outcome.count} vectors",
        training_triggered=True if outcome.training_message else None,
        training_message=outcome.training_message,
        warning=outcome.warning,
    )


def _item_fields(item: ItemPayload, include: Iterable[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": item.id}
    for name in include:
        if name == "metadata":
            fields["metadata"] = item.metadata or {}
        elif name == "contents":
            fields["contents"] = item.contents or ""
        elif name == "vector" and item.vector is not None:
            fields["vector"] = item.vector.tolist()
    return fields


def _hits_json(hits: Sequence[search.Hit], include: Sequence[str]) -> list[dict[str, Any]]:
    with_distance = "distance" in include
    out = []
    for hit in hits:
        fields = _item_fields(hit.item, include)
        if with_distance:
            fields["distance"] = hit.distance
        out.append(fields)
    return out


async def _query_answer(
    ctx: Context,
    caller: Caller,
    body: QueryKnobs,
    vectors: Sequence[Sequence[float]] | Matrix | None,
    texts: Sequence[str] | None = None,
    *,
    flat: Callable[[int], bool],
) -> Response:
    """Run the query and answer its results: one flat list when `flat(rows)`
    holds, else one list per query row."""
    caller.authorize(body.index_name, Permission.READ)
    spec = search.QuerySpec(
        vectors=vectors, top_k=body.top_k or min(DEFAULT_TOP_K, ctx.settings.max_top_k),
        n_probes=body.n_probes or None, filters=body.filters, texts=texts,
        include=body.include,
    )
    results = await search.query(ctx, caller.tenant, body.index_name, body.key_bytes(), spec)

    def build() -> dict[str, Any]:
        nested = [_hits_json(hits, body.include) for hits in results]
        return {"results": nested[0] if flat(len(nested)) else nested}

    return await json_answer(ctx.settings, build, elements=sum(map(len, results)))


@router.post("/query", response_model=QueryResponse, response_model_exclude_none=True)
async def query(body: QueryRequest, ctx: Context, caller: Caller) -> Response:
    """Nearest items to one query vector or text (flat results) or a batch (nested results)."""
    contents = body.query_contents
    if contents is not None:
        if body.query_vectors is not None:
            raise BadRequest("Provide either query_vectors or query_contents, not both.")
        texts = [contents] if isinstance(contents, str) else contents
        single_text = isinstance(contents, str)
        return await _query_answer(ctx, caller, body, None, texts, flat=lambda _: single_text)
    if body.query_vectors is None:
        raise BadRequest("Provide at least one: query_vectors or query_contents.")
    rows = body.query_vectors
    single = not rows or not isinstance(rows[0], list)
    vectors = cast(list[list[float]], [rows] if single else rows)
    return await _query_answer(ctx, caller, body, vectors, flat=lambda _: single)


@router.post("/query_binary", response_model=QueryResponse, response_model_exclude_none=True)
async def query_binary(body: BinaryQueryRequest, ctx: Context, caller: Caller) -> Response:
    """Nearest items to base64 float32 query rows; one row gives flat results."""
    vectors = matrix_from_base64(body.batch.vectors_b64, body.batch.dimension)
    return await _query_answer(ctx, caller, body, vectors, flat=lambda rows: rows == 1)


@router.post("/get", response_model=GetResponse, response_model_exclude_none=True)
async def get(body: GetRequest, ctx: Context, caller: Caller) -> Response:
    """Stored items by id, in request order; unknown ids are left out."""
    caller.authorize(body.index_name, Permission.READ)
    found = await service.get_items(
        ctx, caller.tenant, body.index_name, body.key_bytes(), body.ids, include=body.include
    )
    return await json_answer(
        ctx.settings,
        lambda: {"results": [_item_fields(item, body.include) for item in found]},
        elements=len(found),
    )


@router.post("/delete", response_model=SuccessResponse)
async def delete(body: DeleteRequest, ctx: Context, caller: Caller) -> SuccessResponse:
    """Delete items by id."""
    caller.authorize(body.index_name, Permission.WRITE)
    count = await service.delete_items(
        ctx, caller.tenant, body.index_name, body.key_bytes(), body.ids
    )
    return SuccessResponse(message=f"Deleted {count} vectors")


@router.post("/list_ids", response_model=ListIdsResponse)
async def list_ids(body: IndexOperationRequest, ctx: Context, caller: Caller) -> Response:
    """Every item id in the index."""
    caller.authorize(body.index_name, Permission.READ)
    ids = await service.list_ids(ctx, caller.tenant, body.index_name, body.key_bytes())
    return await json_answer(
        ctx.settings, lambda: {"ids": ids, "count": len(ids)}, elements=len(ids)
    )


@router.post("/query_metadata", response_model=QueryMetadataResponse,
             response_model_exclude_none=True)
async def query_metadata_route(
    body: QueryMetadataRequest, ctx: Context, caller: Caller
) -> Response:
    """Items whose metadata matches the filter, optionally ordered by a field."""
    caller.authorize(body.index_name, Permission.READ)
    order_by, ascending = body.order_by, body.ascending
    if isinstance(order_by, dict):
        if len(order_by) != 1:
            raise InvalidInput("order_by must name exactly one field")
        ((order_by, direction),) = order_by.items()
        ascending = direction > 0
    if order_by is not None and not order_by:
        raise InvalidInput("order_by must be a field name")
    ids = await query_metadata(ctx, caller.tenant, body.index_name, body.key_bytes(), MetadataQuery(
        body.filters, body.top_k, order_by, ascending, body.text,
    ))
    return await json_answer(
        ctx.settings,
        lambda: {"results": [{"id": i} for i in ids], "ids": ids, "count": len(ids)},
        elements=2 * len(ids),
    )


@router.post("/num_vectors", response_model=NumVectorsResponse)
async def num_vectors(
    body: IndexOperationRequest, ctx: Context, caller: Caller
) -> NumVectorsResponse:
    """Number of items in the index."""
    caller.authorize(body.index_name, Permission.READ)
    count = await service.count_items(ctx, caller.tenant, body.index_name, body.key_bytes())
    return NumVectorsResponse(result=count)
