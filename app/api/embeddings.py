"""Route of /v1/embedding-models: which models `embedding_model` may name here."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import get_principal
from app.schemas.embeddings import EmbeddingModelInfo, EmbeddingModelsResponse
from app.services import texts

router = APIRouter(tags=["embeddings"])


@router.get(
    "/embedding-models",
    response_model=EmbeddingModelsResponse,
    dependencies=[Depends(get_principal)],
)
async def embedding_models() -> EmbeddingModelsResponse:
    """The embedding models this installation can load (none without the extra)."""
    return EmbeddingModelsResponse(
        models=[
            EmbeddingModelInfo(
                name=m.name, dimension=m.dimension, max_seq_length=m.max_seq_length
            )
            for m in texts.installed_models()
        ]
    )
