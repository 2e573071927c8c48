"""The encrypted metadata index: posting lists of write sequences per metadata term.

A write appends, per term its items hold (app.metadata_terms), one chunk
holding their write sequences, sealed and stored under the term's keyed
token, in the write's transaction. Nothing is removed when an item is
overwritten or deleted: as in vector blocks, a sequence no item row holds is
stale, and every reader checks candidates against the item rows anyway. A
term whose list has grown to many chunks is merged into one, stale
sequences dropped (`merge_terms`, after a read that met it).

What the database sees: per term token, how many chunks and sequences it
holds (so which tokens are frequent); not the field names, the values, nor
which items a token lists. Chunk ids are random, not sequences, so a chunk
does not name an item row; but a chunk and the item rows it lists are
written by one transaction, which PostgreSQL's system columns (xmin) show
until a merge rewrites the chunk: for a write of a single item, which term
tokens it holds.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.crypto.aead import AuthenticationFailed
from app.crypto.index_cipher import IndexCipher
from app.engine.context import EngineContext
from app.errors import StoredDataCorrupt
from app.ivf.blocks import Seqs
from app.metadata_terms import OVERFLOW, Clauses, IsIndexed, Term, item_terms
from app.store import items as item_repo
from app.store import postings as posting_repo
from app.store.postings import PostingChunk

# A read that meets a term with more chunks than this merges the term's list.
MERGE_CHUNKS = 16


def indexed_fields(schema: Mapping[str, Any] | None) -> IsIndexed:
    """Which field paths the metadata index holds: all but those under a top-level
    field the schema declares `filterable: false`."""
    hidden = {
        name for name, policy in (schema or {}).items()
        if isinstance(policy, Mapping) and policy.get("filterable") is False
    }
    if not hidden:
        return lambda path: True
    return lambda path: path.split(".", 1)[0] not in hidden


def _chunk_id() -> int:
    return secrets.randbits(63)


def _pack(seqs: Seqs) -> bytes:
    return np.asarray(seqs, dtype="<i8").tobytes()


def _open(cipher: IndexCipher, chunk: PostingChunk) -> Seqs:
    try:
        plain = cipher.open_postings(chunk.token, chunk.chunk_id, chunk.ciphertext)
    except AuthenticationFailed as exc:
        raise StoredDataCorrupt("Stored posting list failed authentication") from exc
    if len(plain) != 8 * chunk.n_seqs:
        raise StoredDataCorrupt("Stored posting list holds another number of entries than its row")
    return np.frombuffer(plain, dtype="<i8").astype(np.int64)


def seal_write_postings(
    cipher: IndexCipher, indexed: IsIndexed, seqs: Sequence[int],
    metadata: Sequence[Mapping[str, object] | None],
) -> list[PostingChunk]:
    """The chunks a write of items (`seqs[i]` holding `metadata[i]`) appends."""
    by_term: dict[Term, list[int]] = defaultdict(list)
    for seq, fields in zip(seqs, metadata, strict=True):
        for term in item_terms(fields, indexed):
            by_term[term].append(seq)
    tokens = [cipher.term_token(*term) for term in by_term]
    ids = [_chunk_id() for _ in by_term]
    sealed = cipher.seal_postings(tokens, ids, [_pack(np.sort(s)) for s in by_term.values()])
    return [
        PostingChunk(token, chunk_id, len(listed), blob)
        for token, chunk_id, listed, blob in zip(
            tokens, ids, by_term.values(), sealed, strict=True
        )
    ]


async def candidate_seqs(
    conn: AsyncConnection, cipher: IndexCipher, clauses: Clauses
) -> tuple[Seqs, list[bytes]]:
    """Write sequences holding some term of every clause (stale ones included), with
    the tokens whose lists are due a merge."""
    tokens_of = [{cipher.term_token(*term) for term in clause} for clause in clauses]
    overflow = cipher.term_token(*OVERFLOW)
    wanted = set().union(*tokens_of) | {overflow}
    chunks = await posting_repo.chunks_of_terms(conn, cipher.index_id, wanted)
    listed: dict[bytes, list[Seqs]] = defaultdict(list)
    for chunk in chunks:
        listed[chunk.token].append(_open(cipher, chunk))
    empty = np.zeros(0, dtype=np.int64)

    def union(tokens: set[bytes]) -> Seqs:
        parts = [part for token in tokens for part in listed.get(token, [])]
        return np.unique(np.concatenate(parts)) if parts else empty

    found = union(tokens_of[0])
    for tokens in tokens_of[1:]:
        found = np.intersect1d(found, union(tokens), assume_unique=True)
    found = np.union1d(found, union({overflow}))
    due = [token for token, parts in listed.items() if len(parts) > MERGE_CHUNKS]
    return found, due


async def merge_terms(ctx: EngineContext, cipher: IndexCipher, tokens: Sequence[bytes]) -> None:
    """Rewrite each term's chunks as one, without the sequences no item holds."""
    for token in tokens:
        async with ctx.db.transaction() as conn:
            chunks = await posting_repo.chunks_of_terms(conn, cipher.index_id, [token], lock=True)
            if len(chunks) <= 1:
                continue
            seqs = np.unique(np.concatenate([_open(cipher, chunk) for chunk in chunks]))
            live = np.asarray(
                sorted(await item_repo.live_among(conn, cipher.index_id, seqs.tolist())),
                dtype=np.int64,
            )
            merged = None
            if len(live):
                chunk_id = _chunk_id()
                (blob,) = cipher.seal_postings([token], [chunk_id], [_pack(live)])
                merged = PostingChunk(token, chunk_id, len(live), blob)
            await posting_repo.replace_chunks(
                conn, cipher.index_id, token, [chunk.chunk_id for chunk in chunks], merged
            )
