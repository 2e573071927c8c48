"""Embedding models, the optional `embeddings` extra: which models ciphervec supports
(registry), which this installation can load, and turning texts into vectors (loader).

Nothing here imports torch or sentence-transformers at import time; a model is
loaded the first time a request needs it, once per process.
"""

from app.embeddings.loader import embed, embed_texts
from app.embeddings.registry import (
    DEFAULT_MODEL,
    EXTRA,
    EmbeddingModel,
    find_model,
    installed_models,
    require_installed,
)

__all__ = [
    "DEFAULT_MODEL",
    "EXTRA",
    "EmbeddingModel",
    "embed",
    "embed_texts",
    "find_model",
    "installed_models",
    "require_installed",
]
