"""Wire models of /v1/indexes/* and /v1/health."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.ivf.distance import Metric
from app.schemas.common import IndexKeyHex, IndexOperationRequest, NewIndexName

# Stored as JSONB, which cannot hold a NUL character.
MetadataFieldName = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


class MetadataFieldPolicy(BaseModel):
    """How a metadata field may be used in filters."""

    model_config = {"extra": "forbid"}

    filterable: bool = True
    pattern: bool = False
    full_text: bool = False


class CreateIndexRequest(BaseModel):
    """POST /v1/indexes/create."""

    index_name: NewIndexName
    index_key: IndexKeyHex | None = None
    kms_name: str | None = None
    dimension: int | None = Field(default=None, ge=1, le=16_384)
    embedding_model: str | None = None
    metric: Metric | None = None
    storage_precision: Literal["float32"] | None = None
    metadata_schema: dict[MetadataFieldName, MetadataFieldPolicy] | None = None
    text_fields: list[str] | None = Field(default=None, max_length=0)
    bm25_k1: float | None = None
    bm25_b: float | None = None


class IndexInfoResponse(BaseModel):
    """POST /v1/indexes/describe."""

    index_name: str
    is_trained: bool
    dimension: int
    metric: str
    n_lists: int
    metadata_schema: dict[str, Any] = {}
    bm25: dict[str, Any] | None = None


class TrainRequest(IndexOperationRequest):
    """POST /v1/indexes/train; null fields take their defaults."""

    n_lists: int | None = Field(default=None, ge=1, le=65_536)
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    max_iters: int | None = Field(default=None, ge=1, le=10_000)
    tolerance: float | None = Field(default=None, ge=0)
    max_memory: int | None = Field(default=None, ge=0, description="MB; 0 = no limit.")


class TrainingStatusResponse(BaseModel):
    """GET /v1/indexes/training-status."""

    training_indexes: list[str]
    retrain_threshold: int
    currently_training: str | None = None
    queued_indexes: list[str] = []
    worker_running: bool = False
    worker_pid: int = 0
    global_training: dict[str, Any] = {}


class IndexListResponse(BaseModel):
    """GET /v1/indexes/list."""

    indexes: list[str]


class HealthResponse(BaseModel):
    """GET /v1/health."""

    status: str
    api_version: str
    version: str = Field(description="The CyborgDB API level this server speaks (e.g. 0.18.0), "
                         "which CyborgDB's tools check; not ciphervec's own version.")
    ciphervec_version: str = Field(description="ciphervec's own release.")


class ReadinessResponse(BaseModel):
    """GET /v1/ready, when PostgreSQL answers."""

    status: Literal["ready"] = "ready"


class RotateKeyRequest(IndexOperationRequest):
    """POST /v1/indexes/rotate_key: `index_key` is the current key (SDK-key indexes only);
    exactly one of `new_index_key` and `new_kms_name` names the new one."""

    new_index_key: IndexKeyHex | None = None
    new_kms_name: str | None = Field(default=None, min_length=1, max_length=200)


class RotateKeyResponse(BaseModel):
    """The rotation's outcome: who wraps the DEK now, and the index's new key version."""

    status: str = "success"
    message: str
    key_provider: str
    key_version: int


class CreateUserRequest(BaseModel):
    """POST /v1/indexes/{index_name}/users."""

    permissions: list[str] = Field(max_length=16)
    index_key: IndexKeyHex | None = None


class CreateUserResponse(BaseModel):
    """The new user's id and its API key, shown this once."""

    user_id: str
    api_key: str


class UserEntry(BaseModel):
    """One user of an index."""

    user_id: str
    permissions: list[str]


class UserListResponse(BaseModel):
    """GET /v1/indexes/{index_name}/users."""

    users: list[UserEntry]
