"""The SDK key path: the client's 32-byte `index_key` wraps the index's DEK.

Unwrapped keys are cached in process memory for a short TTL, keyed by the
index and a fingerprint of the key material: a hash of the client key and of
the stored wrapped DEK here, a hash of the stored KMS blob on the KMS path
(app/kms/index_keys.py). A wrong key never hits the cache, and a re-wrapped
(rotated) DEK is a new entry, so the old key stops working as soon as a
process reads the index row again. Keys are never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import threading
import time

from app.crypto.envelope import KeyUnwrapFailed, unwrap_data_key
from app.crypto.index_cipher import IndexCipher
from app.errors import WrongIndexKey

_CacheKey = tuple[int, bytes]


class IndexCipherCache:
    """A TTL cache of opened index ciphers; a cache miss unwraps the DEK."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[_CacheKey, tuple[float, IndexCipher]] = {}
        self._lock = threading.Lock()

    def open(self, index_id: int, index_name: str, wrapped_dek: bytes, kek: bytes) -> IndexCipher:
        """The index's cipher, or WrongIndexKey when `kek` does not unwrap its DEK."""
        fingerprint = hashlib.sha256(kek + b"|" + wrapped_dek).digest()
        cached = self.get(index_id, fingerprint)
        if cached is not None:
            return cached
        try:
            dek = unwrap_data_key(kek, wrapped_dek, index_id)
        except KeyUnwrapFailed as exc:
            raise WrongIndexKey(f"Wrong encryption key for index '{index_name}'") from exc
        cipher = IndexCipher(dek, index_id)
        self.put(index_id, fingerprint, cipher)
        return cipher

    def get(self, index_id: int, fingerprint: bytes) -> IndexCipher | None:
        """A cached cipher still within its TTL, opened from exactly this key material."""
        with self._lock:
            hit = self._entries.get((index_id, fingerprint))
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, index_id: int, fingerprint: bytes, cipher: IndexCipher) -> None:
        """Cache an opened cipher for the TTL (not at all when the TTL is 0)."""
        if self._ttl_s <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._evict_expired(now)
            if len(self._entries) < self._max_entries:
                self._entries[(index_id, fingerprint)] = (now + self._ttl_s, cipher)

    def forget(self, index_id: int) -> None:
        """Drop every cached cipher of an index (deleted or re-keyed)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == index_id]:
                del self._entries[key]

    def _evict_expired(self, now: float) -> None:
        for key in [k for k, (expiry, _) in self._entries.items() if expiry <= now]:
            del self._entries[key]

