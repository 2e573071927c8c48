"""API keys: minting, verifying (constant-time) and revoking.

A key reads `cv_<prefix>_<secret>`. The database keeps the prefix (to find
the row) and the SHA-256 of the whole key; the key itself is shown once, when
it is created. Verified keys are trusted for a few seconds without a lookup,
so a revocation takes effect everywhere within `api_key_cache_ttl_s`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from app.errors import Unauthenticated
from app.store import api_keys as repo
from app.store.api_keys import ApiKeyRow
from app.store.db import Database

_KEY_PREFIX = "cv_"
_PREFIX_CHARS = 12


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for."""

    tenant: str
    key_name: str


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly minted key: `secret` is the only copy of the full key."""

    row: ApiKeyRow
    secret: str


class ApiKeyCache:
    """Verified key hashes -> principal, for a short TTL."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: bytes) -> Principal | None:
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: bytes, principal: Principal) -> None:
        if self._ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + self._ttl_s, principal)


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _split(key: str) -> str | None:
    if not key.startswith(_KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(_KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != _PREFIX_CHARS or not secret:
        return None
    return prefix


async def create_api_key(db: Database, *, name: str, tenant: str | None = None) -> NewApiKey:
    """Mint a key for `tenant` (default: a tenant named after the key)."""
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    secret = f"{_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    async with db.transaction() as conn:
        row = await repo.insert_api_key(
            conn, tenant=tenant or name, name=name, prefix=prefix, key_hash=_hash(secret)
        )
    return NewApiKey(row=row, secret=secret)


async def list_api_keys(db: Database) -> list[ApiKeyRow]:
    """All keys, revoked ones included."""
    async with db.transaction() as conn:
        return await repo.list_api_keys(conn)


async def revoke_api_key(db: Database, prefix: str) -> bool:
    """Revoke the key with this prefix (or the full key); False if none was valid."""
    async with db.transaction() as conn:
        return await repo.revoke_api_key(conn, _split(prefix) or prefix)


async def count_active_api_keys(db: Database) -> int:
    """How many keys can still authenticate."""
    async with db.transaction() as conn:
        return await repo.count_active_api_keys(conn)


async def authenticate(db: Database, cache: ApiKeyCache, key: str | None) -> Principal:
    """The principal of a presented key, or Unauthenticated."""
    if not key:
        raise Unauthenticated("API Key is required")
    key_hash = _hash(key)
    cached = cache.get(key_hash)
    if cached is not None:
        return cached
    prefix = _split(key)
    row = None
    if prefix is not None:
        async with db.transaction() as conn:
            row = await repo.find_api_key_by_prefix(conn, prefix)
    stored = row.key_hash if row is not None else _hash("")
    valid = hmac.compare_digest(stored, key_hash)
    if row is None or not valid or row.revoked_at is not None:
        raise Unauthenticated("Invalid API Key")
    principal = Principal(tenant=row.tenant, key_name=row.name)
    cache.put(key_hash, principal)
    return principal
