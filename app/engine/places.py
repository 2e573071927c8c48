"""Where each vector is: it is stored once, in a block of its inverted list.

An item payload names the place its vector was written, (version, list, block),
so reading it back does not cost a second stored copy per item:

- while that version is active, the vector is in that block or, once
  compaction has merged the block away, in another block of the same list;
- after a training run has replaced the version, the run's list map (pages of
  encrypted (sequence, list) pairs, written before the switch) tells which
  list of the new version holds it.

A vector found in none of these places means a damaged store; rather than give
up, the whole active version is scanned before StoredDataCorrupt is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.crypto.aead import AuthenticationFailed
from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import open_blocks_off_loop
from app.engine.payload import VectorPlace
from app.errors import StoredDataCorrupt
from app.ivf.blocks import Seqs, pack_list_map, unpack_list_map
from app.ivf.vectors import Matrix
from app.store import blocks as block_repo
from app.store.block_cache import BlockCache
from app.store.blocks import BlockRef, BlockRow, SearchView
from app.store.list_maps import ListMapPage

# Entries per list-map page (1.8 kB of plaintext). A read of a moved vector
# fetches and decrypts the whole page that holds it, so pages are small: a row
# this size stays under PostgreSQL's TOAST threshold (about 2 kB), where pages
# of 1,024 entries went out of line. With those, the statement of a get of 10
# ids took 0.33 ms instead of 0.26 (50,000 vectors, retrained). Pages written
# with another size are read the same way.
MAP_PAGE_ENTRIES = 150
_SCAN_PAGE_BLOCKS = 64


def seal_list_map(
    cipher: IndexCipher, version: int, seqs: Seqs, lists: np.ndarray[Any, np.dtype[np.int64]]
) -> list[ListMapPage]:
    """Encrypt a version's (sequence, list) pairs in pages of ascending sequences."""
    order = np.argsort(seqs, kind="stable")
    seqs, lists = seqs[order], lists[order]
    pages = []
    for start in range(0, len(seqs), MAP_PAGE_ENTRIES):
        part = slice(start, start + MAP_PAGE_ENTRIES)
        first, last = int(seqs[part][0]), int(seqs[part][-1])
        plaintext = pack_list_map(seqs[part], lists[part])
        pages.append(ListMapPage(first, last, cipher.seal_list_map(version, first, plaintext)))
    return pages


class BlocksGone(Exception):
    """A block of the view's listing is no longer stored: the listing changed
    after the caller checked the view."""


async def find_vectors(
    conn: AsyncConnection,
    cache: BlockCache,
    cipher: IndexCipher,
    view: SearchView,
    places: Mapping[int, VectorPlace],
    map_pages: Sequence[ListMapPage],
) -> dict[int, Matrix]:
    """The vectors of the live entries `places` names (write sequence -> place).

    The items, `view` and `map_pages` (the active version's list-map pages
    covering the moved entries) agree: they come from one snapshot, or the
    view's signature matched the statement that read the other two. Block
    ciphertexts come from `cache` where held, as searches take them: a block
    never changes under its id. One that is missing from the database
    (possible only on a cached view) raises BlocksGone.
    """
    index_id, active_version = view.row.id, view.row.active_version
    lists = {s: p.list_no for s, p in places.items() if p.version == active_version}
    moved = [s for s, p in places.items() if p.version != active_version]
    if moved:
        lists |= _mapped_lists(cipher, active_version, map_pages, moved)
    found: dict[int, Matrix] = {}
    hinted = {p.block_id for s, p in places.items() if p.version == active_version}
    if hinted:
        refs = [ref for ref in view.blocks if ref.block_id in hinted]
        await _collect(cipher, await _listed_blocks(conn, cache, view, refs), places, found)
    rest = {lists[s] for s in places if s not in found and s in lists}
    if rest:
        tags = [cipher.list_tag(active_version, list_no) for list_no in rest]
        # The hinted blocks among them are opened already.
        refs = [r for r in view.blocks_of_lists(tags) if r.block_id not in hinted]
        await _collect(cipher, await _listed_blocks(conn, cache, view, refs), places, found)
    cursor = 0
    while len(found) < len(places):
        page = await block_repo.page_of_blocks(
            conn, index_id, active_version, after_block_id=cursor, limit=_SCAN_PAGE_BLOCKS
        )
        if not page:
            raise StoredDataCorrupt("A stored item's vector is in none of its index's blocks")
        await _collect(cipher, page, places, found)
        cursor = page[-1].block_id
    return found


async def _listed_blocks(
    conn: AsyncConnection, cache: BlockCache, view: SearchView, refs: Sequence[BlockRef]
) -> list[BlockRow]:
    blocks = await block_repo.block_ciphertexts(
        conn, cache, view.row.id, view.row.active_version, refs
    )
    if len(blocks) < len(refs):
        raise BlocksGone
    return blocks


def _mapped_lists(
    cipher: IndexCipher, version: int, pages: Sequence[ListMapPage], seqs: Sequence[int]
) -> dict[int, int]:
    if not pages:
        return {}
    opened = []
    # Pages cover disjoint ranges: in order of their first sequence, their
    # entries join into one ascending array, searched once.
    for page in sorted(pages, key=lambda p: p.first_seq):
        try:
            plaintext = cipher.open_list_map(version, page.first_seq, page.ciphertext)
        except AuthenticationFailed as exc:
            raise StoredDataCorrupt("Stored list map failed authentication") from exc
        opened.append(unpack_list_map(plaintext))
    map_seqs = np.concatenate([page_seqs for page_seqs, _ in opened])
    map_lists = np.concatenate([page_lists for _, page_lists in opened])
    wanted = np.asarray(seqs, dtype=np.int64)
    position = np.minimum(np.searchsorted(map_seqs, wanted), len(map_seqs) - 1)
    hit = map_seqs[position] == wanted
    return dict(zip(wanted[hit].tolist(), map_lists[position[hit]].tolist(), strict=True))


async def _collect(
    cipher: IndexCipher,
    blocks: Sequence[BlockRow],
    places: Mapping[int, VectorPlace],
    found: dict[int, Matrix],
) -> None:
    """Add the vectors of `places` that `blocks` hold to `found`."""
    if not blocks:
        return
    seqs, vectors = await open_blocks_off_loop(cipher, blocks)
    for position in np.flatnonzero(np.isin(seqs, list(places))).tolist():
        found[int(seqs[position])] = vectors[position].copy()
