"""Reading a whole index back out: every item decrypted, a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from app.engine.blockstore import open_blocks
from app.engine.payload import ItemPayload
from app.services.context import ServiceContext
from app.services.indexes import open_index
from app.services.vectors import open_payload
from app.store import blocks as block_repo
from app.store import items as item_repo


async def stream_items(
    ctx: ServiceContext, tenant: str, name: str, index_key: bytes | None, page_blocks: int = 8
) -> AsyncIterator[list[ItemPayload]]:
    """Every live item of the index with its vector, decrypted, in pages (block order).

    Each live item's vector sits in exactly one block of the active version,
    so walking those blocks and keeping the entries an item still holds visits
    every item once. One read-only REPEATABLE READ transaction: the pages form
    one consistent snapshot even while the index is being written to.
    """
    async with ctx.db.transaction(snapshot=True) as conn:
        opened = await open_index(conn, ctx, tenant, name, index_key)
        version, cursor = opened.row.active_version, 0
        while True:
            blocks = await block_repo.page_of_blocks(
                conn, opened.row.id, version, after_block_id=cursor, limit=page_blocks
            )
            if not blocks:
                return
            cursor = blocks[-1].block_id
            seqs, vectors = open_blocks(opened.cipher, blocks)
            position = {seq: p for p, seq in enumerate(seqs.tolist())}
            rows = await item_repo.items_by_seqs(conn, opened.row.id, position)
            yield [
                replace(open_payload(opened.cipher, row), vector=vectors[position[row.seq]])
                for row in sorted(rows, key=lambda row: position[row.seq])
            ]
