"""Text in place of vectors: the embedding models on offer, and which model an
index embeds its upsert contents and query_contents with."""

from __future__ import annotations

from collections.abc import Sequence

from app import embeddings
from app.errors import InvalidInput
from app.ivf.vectors import Matrix
from app.services.context import ServiceContext
from app.services.indexes import open_index


def installed_models() -> list[embeddings.EmbeddingModel]:
    """The models this installation can load."""
    return embeddings.installed_models()


def has_text(text: str | None) -> bool:
    """Whether `text` has anything to embed (empty and blank strings do not)."""
    return bool(text and text.strip())


async def index_model(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None
) -> str | None:
    """The index's embedding model, after opening it (404, 401) outside any transaction.

    Callers embed after this returns, so no model runs for a request that
    would be refused and no row lock is held while it runs.
    """
    async with ctx.db.autocommit() as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
    return opened.row.embedding_model


async def embed(ctx: ServiceContext, model: str, texts: Sequence[str]) -> Matrix:
    """`texts` embedded with `model`, at most `max_embedded_items` per request: one
    request must not hold the process's single embedding thread for minutes."""
    limit = ctx.settings.max_embedded_items
    if len(texts) > limit:
        raise InvalidInput(
            f"{len(texts)} texts to embed in one request; at most {limit} "
            "(send vectors, or split the request)"
        )
    return await embeddings.embed(model, texts)
