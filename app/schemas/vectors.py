"""Wire models of /v1/vectors/*."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.common import IndexOperationRequest

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Include = Literal["distance", "metadata", "contents", "vector"]
TopK = Annotated[int, Field(ge=1)]
Probes = Annotated[int, Field(ge=0)]
QueryText = Annotated[str, StringConstraints(min_length=1)]


class VectorItem(BaseModel):
    """One item of an upsert."""

    id: ItemId
    vector: list[float] | None = None
    contents: str | None = None
    metadata: dict[str, Any] | None = None


class UpsertRequest(IndexOperationRequest):
    """POST /v1/vectors/upsert."""

    items: list[VectorItem] = Field(min_length=1)


class BinaryVectorBatch(BaseModel):
    """Base64 little-endian float32 rows with their ids."""

    ids: list[ItemId] = Field(min_length=1)
    vectors_b64: str
    dimension: int = Field(ge=1, le=16_384)
    metadata: list[dict[str, Any] | None] | None = None
    contents: list[str | None] | None = None


class BinaryUpsertRequest(IndexOperationRequest):
    """POST /v1/vectors/upsert_binary."""

    batch: BinaryVectorBatch


class UpsertResponse(BaseModel):
    """Upsert acknowledgement; training fields appear when it started a training run."""

    status: str = "success"
    message: str
    training_triggered: bool | None = None
    training_message: str | None = None
    warning: str | None = None


class QueryKnobs(IndexOperationRequest):
    """Knobs shared by every query route."""

    top_k: TopK | None = None
    n_probes: Probes | None = None
    rerank_mult: int | None = None
    greedy: bool | None = None
    filters: dict[str, Any] | None = None
    include: list[Include] = []


class QueryRequest(QueryKnobs):
    """POST /v1/vectors/query: one vector or text, or a batch of vectors or texts.

    `query_contents` needs an index with an embedding model; a list of texts
    (an extension of the reference, whose batch query takes vectors only)
    gives one result list per text, as a batch of vectors does.
    """

    query_vectors: list[float] | list[list[float]] | None = None
    query_contents: QueryText | Annotated[list[QueryText], Field(min_length=1)] | None = None


class BinaryQueryBatch(BaseModel):
    """Base64 little-endian float32 query rows."""

    vectors_b64: str
    dimension: int = Field(ge=1, le=16_384)


class BinaryQueryRequest(QueryKnobs):
    """POST /v1/vectors/query_binary."""

    batch: BinaryQueryBatch


class QueryResultItem(BaseModel):
    """One search result; optional keys appear only when included."""

    id: str
    distance: float | None = None
    metadata: dict[str, Any] | None = None
    contents: str | None = None
    vector: list[float] | None = None


class QueryResponse(BaseModel):
    """Results for one query (flat) or a batch (nested)."""

    results: list[QueryResultItem] | list[list[QueryResultItem]]


class GetRequest(IndexOperationRequest):
    """POST /v1/vectors/get."""

    ids: list[ItemId]
    include: list[Literal["vector", "contents", "metadata"]] = ["vector", "contents", "metadata"]


class GetResultItem(BaseModel):
    """One stored item; optional keys appear only when included."""

    id: str
    vector: list[float] | None = None
    contents: str | None = None
    metadata: dict[str, Any] | None = None


class GetResponse(BaseModel):
    """Items found, in request order."""

    results: list[GetResultItem]


class DeleteRequest(IndexOperationRequest):
    """POST /v1/vectors/delete."""

    ids: list[ItemId]


class ListIdsResponse(BaseModel):
    """POST /v1/vectors/list_ids."""

    ids: list[str]
    count: int


class QueryMetadataRequest(IndexOperationRequest):
    """POST /v1/vectors/query_metadata: items by metadata alone.

    `order_by` is a field path, or `{"field": 1 | -1}` (which also sets the
    direction); `top_k` null returns every match.
    """

    filters: dict[str, Any] | None = None
    top_k: TopK | None = None
    order_by: str | dict[str, Literal[1, -1]] | None = None
    ascending: bool = True
    text: str | None = None
    text_fields: list[str] | None = None
    text_field_weights: list[float] | None = None
    require_all_terms: bool | None = None


class MetadataResultItem(BaseModel):
    """One item found by query_metadata; `score` only for a text query."""

    id: str
    score: float | None = None


class QueryMetadataResponse(BaseModel):
    """POST /v1/vectors/query_metadata."""

    results: list[MetadataResultItem]
    ids: list[str]
    count: int


class NumVectorsResponse(BaseModel):
    """POST /v1/vectors/num_vectors."""

    result: int
