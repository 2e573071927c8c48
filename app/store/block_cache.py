"""A bounded in-process LRU of block ciphertexts, so searches rarely read blocks from PostgreSQL.

Blocks are immutable (a rewrite gets a new id), so a cached ciphertext never
goes stale; it only stops being listed. Only ciphertext is cached: a memory
dump of the service between requests shows no vectors.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class BlockCache:
    """(index id, block id) -> ciphertext, evicting least recently used past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, index_id: int, block_id: int) -> bytes | None:
        """The cached ciphertext, or None."""
        with self._lock:
            blob = self._entries.get((index_id, block_id))
            if blob is None:
                self.misses += 1
                return None
            self._entries.move_to_end((index_id, block_id))
            self.hits += 1
            return blob

    def put(self, index_id: int, block_id: int, blob: bytes) -> None:
        """Remember a ciphertext, evicting old entries to stay under the bound."""
        if len(blob) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop((index_id, block_id), None)
            if old is not None:
                self._bytes -= len(old)
            self._entries[(index_id, block_id)] = blob
            self._bytes += len(blob)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    def forget_index(self, index_id: int) -> None:
        """Drop every block of a deleted index."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == index_id]:
                self._bytes -= len(self._entries.pop(key))
