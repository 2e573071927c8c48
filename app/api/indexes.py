"""Routes of /v1/indexes: create, list, describe, delete, train, rotate_key."""

from __future__ import annotations

import os

from fastapi import APIRouter

from app.api.deps import Caller, Context
from app.api.json_body import FastJsonRoute
from app.ivf.distance import Metric
from app.schemas.common import IndexOperationRequest, SuccessResponse, key_from_hex
from app.schemas.indexes import (
    CreateIndexRequest,
    IndexInfoResponse,
    IndexListResponse,
    RotateKeyRequest,
    RotateKeyResponse,
    TrainingStatusResponse,
    TrainRequest,
)
from app.services import indexes as service
from app.services import training
from app.services.auth import Permission

router = APIRouter(prefix="/indexes", tags=["indexes"], route_class=FastJsonRoute)


@router.get("/list", response_model=IndexListResponse)
async def list_indexes(ctx: Context, caller: Caller) -> IndexListResponse:
    """Names of the caller's indexes."""
    caller.require_tenant_key()
    return IndexListResponse(indexes=await service.list_indexes(ctx, caller.tenant))


@router.post("/create", response_model=SuccessResponse)
async def create_index(
    body: CreateIndexRequest, ctx: Context, caller: Caller
) -> SuccessResponse:
    """Create an index whose data key is wrapped under `index_key` or a KMS key."""
    caller.require_tenant_key()
    spec = service.IndexSpec(
        name=body.index_name,
        index_key=key_from_hex(body.index_key),
        kms_name=body.kms_name,
        dimension=body.dimension,
        metric=body.metric or Metric.EUCLIDEAN,
        embedding_model=body.embedding_model,
        metadata_schema=(
            {k: v.model_dump() for k, v in body.metadata_schema.items()}
            if body.metadata_schema
            else None
        ),
    )
    await service.create_index(ctx, caller.tenant, spec)
    return SuccessResponse(message=f"Index '{body.index_name}' created successfully")


@router.post("/describe", response_model=IndexInfoResponse)
async def describe_index(
    body: IndexOperationRequest, ctx: Context, caller: Caller
) -> IndexInfoResponse:
    """Configuration and training state of an index."""
    caller.authorize(body.index_name, None)
    info = await service.describe_index(ctx, caller.tenant, body.index_name, body.key_bytes())
    return IndexInfoResponse(
        index_name=info.name,
        is_trained=info.is_trained,
        dimension=info.dimension,
        metric=info.metric,
        n_lists=info.n_lists,
        metadata_schema=info.metadata_schema,
    )


@router.post("/delete", response_model=SuccessResponse)
async def delete_index(
    body: IndexOperationRequest, ctx: Context, caller: Caller
) -> SuccessResponse:
    """Delete an index and all its items."""
    caller.authorize(body.index_name, Permission.ADMIN)
    await service.delete_index(ctx, caller.tenant, body.index_name, body.key_bytes())
    return SuccessResponse(message=f"Index '{body.index_name}' deleted successfully")


@router.post("/train", response_model=SuccessResponse)
async def train_index(body: TrainRequest, ctx: Context, caller: Caller) -> SuccessResponse:
    """Train the index's IVF lists now; blocks until the new version is active."""
    caller.authorize(body.index_name, Permission.ADMIN)
    params = training.TrainParams(
        n_lists=body.n_lists,
        batch_size=body.batch_size or 2048,
        max_iters=body.max_iters or 100,
        tolerance=body.tolerance if body.tolerance is not None else 1e-6,
        max_memory_mb=body.max_memory or 0,
    )
    await training.train(ctx, caller.tenant, body.index_name, body.key_bytes(), params)
    return SuccessResponse(message=f"Index '{body.index_name}' trained successfully")


@router.get("/training-status", response_model=TrainingStatusResponse)
async def training_status(ctx: Context, caller: Caller) -> TrainingStatusResponse:
    """The caller's indexes being trained right now, by any service process."""
    names = await training.training_now(ctx, caller.tenant)
    if not caller.is_tenant_key:
        names = [name for name in names if name == caller.index_name]
    return TrainingStatusResponse(
        training_indexes=names,
        retrain_threshold=ctx.settings.auto_train_threshold,
        currently_training=names[0] if names else None,
        worker_running=bool(names),
        worker_pid=os.getpid() if names else 0,
    )


@router.post("/rotate_key", response_model=RotateKeyResponse)
async def rotate_key(body: RotateKeyRequest, ctx: Context, caller: Caller) -> RotateKeyResponse:
    """Re-wrap the index's data key under a new index_key or KMS key; items are untouched."""
    caller.authorize(body.index_name, Permission.ADMIN)
    rotation = await service.rotate_key(
        ctx, caller.tenant, body.index_name, body.key_bytes(),
        key_from_hex(body.new_index_key),
        body.new_kms_name,
    )
    return RotateKeyResponse(
        message=f"Key of index '{body.index_name}' rotated (provider={rotation.provider})",
        key_provider=rotation.provider,
        key_version=rotation.key_version,
    )
