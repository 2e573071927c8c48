"""Reading a whole index back out: every item decrypted, a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.services.payload import ItemPayload
from app.services.vectors import open_payload
from app.store import items as item_repo


async def stream_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, page_size: int = 1024
) -> AsyncIterator[list[ItemPayload]]:
    """Every live item of the index, decrypted, in pages of `page_size` (id token order).

    One read-only REPEATABLE READ transaction: the pages form one consistent
    snapshot even while the index is being written to.
    """
    async with ctx.db.transaction(snapshot=True) as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        async for page in item_repo.stream_items(conn, opened.row.id, page_size):
            yield [open_payload(opened.cipher, row) for row in page]
