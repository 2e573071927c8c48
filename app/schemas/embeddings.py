"""Wire models of /v1/embedding-models."""

from __future__ import annotations

from pydantic import BaseModel


class EmbeddingModelInfo(BaseModel):
    """One model an index can be created with."""

    name: str
    dimension: int
    max_seq_length: int


class EmbeddingModelsResponse(BaseModel):
    """GET /v1/embedding-models: the models this installation can load."""

    models: list[EmbeddingModelInfo]
