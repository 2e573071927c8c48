"""Per-index sub-keys and the associated data that binds each ciphertext to its place.

From an index's DEK, HKDF-SHA256 derives independent sub-keys, one per use:

- `item`:     AES-GCM over an item's payload (id, contents, metadata, vector);
              associated data = index id, id token and the item's write sequence,
              so a payload moved to another row or paired with another sequence fails.
- `block`:    AES-GCM over a packed block of vectors; associated data = index id,
              index version, list tag and block id.
- `centroid`: AES-GCM over an index version's centroids.
- `list-map`: AES-GCM over a page of an index version's (sequence, list) map;
              associated data = index id, version and the page's first sequence.
- `id`:       HMAC-SHA256 key for id tokens; rows are addressed by
              `id_token = HMAC(k_id, id)[:16]`, never by the id.
- `list`:     HMAC-SHA256 key for list tags `HMAC(k_list, version || list_no)[:16]`,
              so the database sees list sizes but not which centroid a row belongs to.
- `term`:     HMAC-SHA256 key for metadata term tokens
              `HMAC(k_term, len(path) || path || value)[:16]` (app.metadata_terms), so
              the metadata index is addressed by neither field names nor values.
- `postings`: AES-GCM over a chunk of a term's posting list (write sequences);
              associated data = index id, term token and chunk id.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.crypto.aead import KEY_BYTES, Aead
from app.crypto.prf import HmacSha256

TOKEN_BYTES = 16
# Two versions' worth of tags at the largest n_lists (65,536).
_MAX_REMEMBERED_TAGS = 1 << 17
_LABEL_PREFIX = b"ciphervec/v1/"


def _derive(dek: bytes, label: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=_LABEL_PREFIX + label.encode())
    return hkdf.derive(dek)


class IndexCipher:
    """All cryptographic operations on one index's data, under its DEK."""

    __slots__ = (
        "index_id", "_prefix", "_item", "_block", "_centroid", "_list_map", "_id_key", "_list_key",
        "_list_tags", "_term_key", "_postings",
    )

    def __init__(self, dek: bytes, index_id: int) -> None:
        self.index_id = index_id
        self._prefix = index_id.to_bytes(8, "big")
        self._item = Aead(_derive(dek, "item"))
        self._block = Aead(_derive(dek, "block"))
        self._centroid = Aead(_derive(dek, "centroid"))
        self._list_map = Aead(_derive(dek, "list-map"))
        self._id_key = HmacSha256(_derive(dek, "id-token"))
        self._list_key = HmacSha256(_derive(dek, "list-tag"))
        self._list_tags: dict[tuple[int, int], bytes] = {}
        self._term_key = HmacSha256(_derive(dek, "metadata-term"))
        self._postings = Aead(_derive(dek, "postings"))

    def __repr__(self) -> str:
        return f"IndexCipher(index_id={self.index_id}, <secret>)"

    def id_token(self, item_id: str) -> bytes:
        """The opaque token under which an item id is stored."""
        return self._id_key.digest(item_id.encode("utf-8"))[:TOKEN_BYTES]

    def list_tag(self, version: int, list_no: int) -> bytes:
        """The opaque tag of inverted list `list_no` in index version `version`.

        Remembered: a cipher lives as long as its cached DEK, and every search
        asks again for the tags of the lists it probes. A tag is no secret (the
        database stores it); which list it names is no more secret than the key.
        """
        tag = self._list_tags.get((version, list_no))
        if tag is None:
            if len(self._list_tags) >= _MAX_REMEMBERED_TAGS:
                self._list_tags.clear()
            message = struct.pack(">QQ", version, list_no)
            tag = self._list_tags[version, list_no] = self._list_key.digest(message)[:TOKEN_BYTES]
        return tag

    def _item_aad(self, id_token: bytes, seq: int) -> bytes:
        return b"item" + self._prefix + id_token + seq.to_bytes(8, "big")

    def seal_items(
        self, id_tokens: Sequence[bytes], seqs: Sequence[int], plaintexts: Sequence[bytes]
    ) -> list[bytes]:
        """Encrypt item payloads, each for its row."""
        aad = self._item_aad
        return self._item.seal_many(
            plaintexts, [aad(t, s) for t, s in zip(id_tokens, seqs, strict=True)]
        )

    def open_item(self, id_token: bytes, seq: int, blob: bytes) -> bytes:
        """Decrypt an item payload read from its row."""
        return self._item.open(blob, self._item_aad(id_token, seq))

    def _block_aad(self, version: int, list_tag: bytes, block_id: int) -> bytes:
        return b"block" + self._prefix + struct.pack(">QQ", version, block_id) + list_tag

    def seal_block(self, version: int, list_tag: bytes, block_id: int, plaintext: bytes) -> bytes:
        """Encrypt a packed vector block for its place in an inverted list."""
        return self._block.seal(plaintext, self._block_aad(version, list_tag, block_id))

    def open_block_into(
        self, version: int, list_tag: bytes, block_id: int, blob: bytes, out: memoryview
    ) -> None:
        """Decrypt a packed vector block read from its place into `out` (see Aead.open_into)."""
        self._block.open_into(blob, self._block_aad(version, list_tag, block_id), out)

    def _centroid_aad(self, version: int) -> bytes:
        return b"centroids" + self._prefix + version.to_bytes(8, "big")

    def seal_centroids(self, version: int, plaintext: bytes) -> bytes:
        """Encrypt the packed centroids of an index version."""
        return self._centroid.seal(plaintext, self._centroid_aad(version))

    def open_centroids(self, version: int, blob: bytes) -> bytes:
        """Decrypt the packed centroids of an index version."""
        return self._centroid.open(blob, self._centroid_aad(version))

    def _list_map_aad(self, version: int, first_seq: int) -> bytes:
        return b"list-map" + self._prefix + struct.pack(">Qq", version, first_seq)

    def seal_list_map(self, version: int, first_seq: int, plaintext: bytes) -> bytes:
        """Encrypt one page of a version's (sequence, list) map."""
        return self._list_map.seal(plaintext, self._list_map_aad(version, first_seq))

    def open_list_map(self, version: int, first_seq: int, blob: bytes) -> bytes:
        """Decrypt one page of a version's (sequence, list) map."""
        return self._list_map.open(blob, self._list_map_aad(version, first_seq))

    def term_token(self, path: str, value: bytes) -> bytes:
        """The opaque token under which a metadata term's postings are stored."""
        name = path.encode("utf-8", "surrogatepass")
        return self._term_key.digest(struct.pack(">I", len(name)) + name + value)[:TOKEN_BYTES]

    def _postings_aad(self, token: bytes, chunk_id: int) -> bytes:
        return b"postings" + self._prefix + token + struct.pack(">q", chunk_id)

    def seal_postings(self, tokens: Sequence[bytes], chunk_ids: Sequence[int],
                      plaintexts: Sequence[bytes]) -> list[bytes]:
        """Encrypt posting chunks, each for its (term token, chunk id) row."""
        aad = self._postings_aad
        return self._postings.seal_many(
            plaintexts, [aad(t, c) for t, c in zip(tokens, chunk_ids, strict=True)]
        )

    def open_postings(self, token: bytes, chunk_id: int, blob: bytes) -> bytes:
        """Decrypt a posting chunk read from its row."""
        return self._postings.open(blob, self._postings_aad(token, chunk_id))
