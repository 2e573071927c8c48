"""Loading embedding models once per process and running them off the event loop.

A model is loaded on the first request that needs it, under a lock, so
concurrent first requests load it once; loading imports torch and
sentence-transformers (several seconds) and reads the weights from the
model's package. Nothing is fetched from a model hub: HF_HUB_OFFLINE and
TRANSFORMERS_OFFLINE are set before those libraries are imported, and the
model is opened from a local directory with local_files_only.

Model calls from the service run on one dedicated worker thread: the event
loop keeps serving other requests, and concurrent embedding requests queue
rather than contend for the cores torch already spreads each call over.

Vectors come back as sentence-transformers gives them with
normalize_embeddings=True: unit length (all-MiniLM-L6-v2 ends in a Normalize
module anyway), so euclidean, squared_euclidean, cosine and dotproduct rank
results the same way on an embedding index. Texts longer than the model's max_seq_length
tokens are truncated by the tokenizer.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from app.embeddings.registry import EXTRA, EmbeddingModel, find_model
from app.errors import EmbeddingModelUnavailable

log = logging.getLogger("ciphervec.embeddings")

Matrix = npt.NDArray[np.float32]

# Texts per forward pass inside one model call; sentence-transformers sorts a
# call's texts by length, so short texts are padded only to their neighbours.
ENCODE_BATCH_SIZE = 64


class ModelCache:
    """Loaded models by name; each is loaded at most once, whichever thread asks first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self.loads = 0

    def get(self, model: EmbeddingModel) -> Any:
        """The loaded model, loading it now if no thread has yet."""
        loaded = self._models.get(model.name)
        if loaded is None:
            with self._lock:
                loaded = self._models.get(model.name)
                if loaded is None:
                    loaded = self._models[model.name] = _load(model)
                    self.loads += 1
        return loaded


def _load(model: EmbeddingModel) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        weights = importlib.import_module(model.weights_module)
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - optional extra
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.disable_progress_bar()
        return SentenceTransformer(
            str(weights.get_model_path()), device="cpu", local_files_only=True
        )
    except Exception as exc:  # any failure of third-party loading code means "unavailable"
        log.error("could not load embedding model %s", model.name, exc_info=exc)
        raise EmbeddingModelUnavailable(
            f"Embedding model '{model.name}' could not be loaded ({type(exc).__name__}: {exc}); "
            f"it needs the '{EXTRA}' extra (pip install 'ciphervec[{EXTRA}]')"
        ) from exc


_models = ModelCache()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ciphervec-embed")


def embed_texts(model_name: str, texts: Sequence[str]) -> Matrix:
    """Embed `texts` with one model call: a (len(texts), dimension) float32 matrix.

    Blocks for as long as the model runs; async code calls `embed` instead.
    """
    model = find_model(model_name)
    if not texts:
        return np.zeros((0, model.dimension), dtype=np.float32)
    encoder = _models.get(model)
    out = encoder.encode(
        list(texts),
        batch_size=ENCODE_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    matrix = np.ascontiguousarray(out, dtype=np.float32)
    if matrix.shape != (len(texts), model.dimension):
        raise EmbeddingModelUnavailable(
            f"Embedding model '{model.name}' produced vectors of shape {matrix.shape}, "
            f"expected ({len(texts)}, {model.dimension})"
        )
    return matrix


async def embed(model_name: str, texts: Sequence[str]) -> Matrix:
    """`embed_texts` on the embedding thread, so the event loop keeps serving."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, embed_texts, model_name, list(texts))
