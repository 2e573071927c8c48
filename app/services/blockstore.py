"""Vector blocks and centroids as the services use them: seal, open, group by list.

Every write of vectors goes through `seal_assigned`: entries are grouped by
inverted list and packed into blocks of at most `block_size`, one AEAD call
per block. A block's id is the write sequence of its first entry for upserts,
or an id reserved from the index's sequence for rewritten blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.crypto.aead import AuthenticationFailed
from app.crypto.index_cipher import IndexCipher
from app.errors import StoredDataCorrupt
from app.ivf.blocks import Seqs, pack_block, unpack_block
from app.ivf.kmeans import pack_centroids, unpack_centroids
from app.ivf.vectors import Matrix
from app.store import centroids as centroid_repo
from app.store.blocks import BlockRow

Lists = np.ndarray[Any, np.dtype[np.int64]]


def seal_assigned(
    cipher: IndexCipher,
    version: int,
    lists: Lists,
    seqs: Seqs,
    vectors: Matrix,
    block_size: int,
    block_ids: Iterator[int] | None = None,
) -> list[BlockRow]:
    """Group entries by list and seal them into blocks."""
    rows: list[BlockRow] = []
    order = np.argsort(lists, kind="stable")
    bounds = np.flatnonzero(np.diff(lists[order])) + 1
    for group in np.split(order, bounds):
        if len(group):
            tag = cipher.list_tag(version, int(lists[group[0]]))
            rows += seal_list(
                cipher, version, tag, seqs[group], vectors[group], block_size, block_ids
            )
    return rows


def entry_blocks(lists: Lists, blocks: Sequence[BlockRow]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The id of the block each entry went into, in the input order of the
    `seal_assigned` call that made `blocks` from `lists`.

    That call packs entries list by list (a stable sort), block after block, so
    the blocks' entry counts, in order, cover the sorted entries exactly.
    """
    placed = np.empty(len(lists), dtype=np.int64)
    placed[np.argsort(lists, kind="stable")] = np.repeat(
        [b.block_id for b in blocks], [b.n_vectors for b in blocks]
    )
    return placed


def seal_list(
    cipher: IndexCipher,
    version: int,
    list_tag: bytes,
    seqs: Seqs,
    vectors: Matrix,
    block_size: int,
    block_ids: Iterator[int] | None = None,
) -> list[BlockRow]:
    """Seal the entries of one list into blocks of at most `block_size`."""
    rows = []
    for start in range(0, len(seqs), block_size):
        part_seqs = seqs[start : start + block_size]
        block_id = next(block_ids) if block_ids is not None else int(part_seqs[0])
        plaintext = pack_block(part_seqs, vectors[start : start + block_size])
        ciphertext = cipher.seal_block(version, list_tag, block_id, plaintext)
        rows.append(BlockRow(block_id, version, list_tag, len(part_seqs), ciphertext))
    return rows


def open_blocks(cipher: IndexCipher, blocks: Sequence[BlockRow]) -> tuple[Seqs, Matrix]:
    """Decrypt blocks into one array of sequences and one matrix of vectors."""
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    seq_parts, vector_parts = [], []
    for block in blocks:
        try:
            plaintext = cipher.open_block(
                block.version, block.list_tag, block.block_id, block.ciphertext
            )
        except AuthenticationFailed as exc:
            raise StoredDataCorrupt("Stored vector block failed authentication") from exc
        block_seqs, block_vectors = unpack_block(plaintext)
        seq_parts.append(block_seqs)
        vector_parts.append(block_vectors)
    return np.concatenate(seq_parts), np.concatenate(vector_parts)


class MissingCentroids(StoredDataCorrupt):
    """A version's centroids are not stored (or no longer: the version was replaced)."""


def seal_centroids(cipher: IndexCipher, version: int, centroids: Matrix) -> bytes:
    """Encrypt a version's centroids."""
    return cipher.seal_centroids(version, pack_centroids(centroids))


class CentroidCache:
    """(index, version) -> centroid ciphertext; versions are immutable once active."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._entries: dict[tuple[int, int], bytes] = {}
        self._max_entries = max_entries

    async def load(
        self, conn: AsyncConnection, cipher: IndexCipher, version: int
    ) -> Matrix | None:
        """The decrypted centroids of `version`, or None for the untrained version 0."""
        if version == 0:
            return None
        key = (cipher.index_id, version)
        blob = self._entries.get(key)
        if blob is None:
            blob = await centroid_repo.centroids_ciphertext(conn, cipher.index_id, version)
            if blob is None:
                raise MissingCentroids("Active index version has no centroids")
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = blob
        try:
            return unpack_centroids(cipher.open_centroids(version, blob))
        except AuthenticationFailed as exc:
            raise StoredDataCorrupt("Stored centroids failed authentication") from exc
