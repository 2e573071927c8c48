"""Text in place of vectors: the embedding models on offer, and which model an
index embeds its upsert contents and query_contents with."""

from __future__ import annotations

from app import embeddings
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
