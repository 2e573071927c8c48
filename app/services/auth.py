"""API keys: minting, verifying (constant-time), revoking, and what a key may do.

A key reads `cv_<prefix>_<secret>`. A tenant key acts for its tenant on all
of its indexes. A per-index user key (minted through /v1/indexes/{n}/users)
acts for the same tenant on one index only, with a set of permissions:

- `read`:  query, get, list_ids, num_vectors;
- `write`: upsert and delete items (not read them back);
- `admin`: train, delete the index, rotate its key, manage its users, and
  mint user keys with permissions it holds itself (never more);
- any permission may describe the index (the SDK's load_index needs that).

Creating and listing indexes needs a tenant key. The database keeps the prefix (to find
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
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Forbidden, IndexNotFound, TenantExists, Unauthenticated
from app.store import api_keys as repo
from app.store.api_keys import ApiKeyRow
from app.store.db import Database

_KEY_PREFIX = "cv_"
_PREFIX_CHARS = 12


class Permission(StrEnum):
    """What a per-index user key may be granted."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for; `index_name` and `permissions` are set for user keys only."""

    tenant: str
    key_name: str
    key_prefix: str = ""
    index_name: str | None = None
    permissions: frozenset[Permission] | None = None

    @property
    def is_tenant_key(self) -> bool:
        """True for a tenant (root) key, which may do anything in its tenant."""
        return self.permissions is None

    def authorize(self, index_name: str, permission: Permission | None) -> None:
        """Allow an operation on `index_name` needing `permission` (None: any), or raise.

        Another index is 404, as if absent (a user key learns nothing about its
        tenant's other indexes); a missing permission on its own index is 403.
        """
        if self.permissions is None:
            return
        if index_name != self.index_name:
            raise IndexNotFound(index_name)
        if permission is not None and permission not in self.permissions:
            raise Forbidden(
                f"This API key lacks the '{permission.value}' permission on index '{index_name}'"
            )

    def authorize_grant(self, index_name: str, granted: frozenset[Permission]) -> None:
        """Allow minting a user key on `index_name` with `granted`, or raise.

        Least privilege: an index admin may grant only permissions it holds
        itself (otherwise an admin-only key could mint a reader and read through
        it); a tenant key may grant any. Asking for more is 403 naming the rest.
        """
        self.authorize(index_name, Permission.ADMIN)
        if self.permissions is None:
            return
        lacking = [p.value for p in Permission if p in granted - self.permissions]
        if lacking:
            raise Forbidden(
                f"This API key cannot grant permissions it lacks on index '{index_name}': "
                + ", ".join(lacking)
            )

    def require_tenant_key(self) -> None:
        """Allow only tenant keys (index creation and listing)."""
        if self.permissions is not None:
            raise Forbidden("This operation requires an admin (root) API key")


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

    def forget_index(self, tenant: str, index_name: str) -> None:
        """Stop trusting the user keys of a deleted index in this process."""
        with self._lock:
            for key_hash in [h for h, (_, p) in self._entries.items()
                             if (p.tenant, p.index_name) == (tenant, index_name)]:
                del self._entries[key_hash]

    def forget(self, prefix: str) -> None:
        """Stop trusting a key in this process at once (other processes: within the TTL)."""
        with self._lock:
            for key_hash in [h for h, (_, p) in self._entries.items() if p.key_prefix == prefix]:
                del self._entries[key_hash]


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
    """Mint a key for `tenant`; without one, for a new tenant named after the key.

    A key joins an existing tenant only when that tenant is named: without
    `tenant`, a name that already has keys or indexes is TenantExists.
    """
    async with db.transaction() as conn:
        if tenant is None:
            await repo.lock_tenant_name(conn, name)
            if await repo.tenant_exists(conn, name):
                raise TenantExists(name)
        return await mint_api_key(conn, name=name, tenant=tenant or name)


async def mint_api_key(
    conn: AsyncConnection,
    *,
    name: str,
    tenant: str,
    index_id: int | None = None,
    permissions: frozenset[Permission] | None = None,
) -> NewApiKey:
    """Mint a key inside the caller's transaction; a user key when `index_id` is given."""
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    secret = f"{_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = await repo.insert_api_key(
        conn, tenant=tenant, name=name, prefix=prefix, key_hash=_hash(secret),
        index_id=index_id,
        permissions=None if permissions is None else sorted(p.value for p in permissions),
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
    if row.index_id is not None and (row.index_name is None or row.permissions is None):
        raise Unauthenticated("Invalid API Key")  # its index is gone
    principal = Principal(
        tenant=row.tenant,
        key_name=row.name,
        key_prefix=row.prefix,
        index_name=row.index_name,
        permissions=(
            None if row.index_id is None
            else frozenset(Permission(p) for p in row.permissions or ())
        ),
    )
    cache.put(key_hash, principal)
    return principal
