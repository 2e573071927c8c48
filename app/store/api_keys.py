"""Repository of API keys (hashes only): tenant keys and per-index user keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import api_keys, indexes


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """A stored API key, without any secret."""

    id: int
    tenant: str
    name: str
    prefix: str
    key_hash: bytes
    created_at: datetime
    revoked_at: datetime | None
    index_id: int | None = None
    permissions: list[str] | None = None
    index_name: str | None = None


# The first key of tenant-name advisory locks (index maintenance locks use 0x43565801).
_TENANT_LOCKS = 0x43565802


def _row(r: object) -> ApiKeyRow:
    return ApiKeyRow(**r._mapping)  # type: ignore[attr-defined]


# Keys with the name of the index a user key is limited to (NULL for tenant keys).
_WITH_INDEX = select(*api_keys.c, indexes.c.name.label("index_name")).select_from(
    api_keys.outerjoin(indexes, indexes.c.id == api_keys.c.index_id)
)


async def insert_api_key(
    conn: AsyncConnection,
    *,
    tenant: str,
    name: str,
    prefix: str,
    key_hash: bytes,
    index_id: int | None = None,
    permissions: list[str] | None = None,
) -> ApiKeyRow:
    """Store a new key's hash and return its row."""
    result = await conn.execute(
        insert(api_keys)
        .values(tenant=tenant, name=name, prefix=prefix, key_hash=key_hash,
                index_id=index_id, permissions=permissions)
        .returning(*api_keys.c)
    )
    return _row(result.one())


async def lock_tenant_name(conn: AsyncConnection, tenant: str) -> None:
    """Hold the lock of the name `tenant` until the transaction ends, so transactions
    that check for the tenant and then create it take turns."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
        {"ns": _TENANT_LOCKS, "tenant": tenant},
    )


async def tenant_exists(conn: AsyncConnection, tenant: str) -> bool:
    """Whether any API key (revoked ones included) or any index belongs to `tenant`."""
    result = await conn.execute(select(or_(
        exists().where(api_keys.c.tenant == tenant), exists().where(indexes.c.tenant == tenant)
    )))
    return bool(result.scalar_one())


async def find_api_key_by_prefix(conn: AsyncConnection, prefix: str) -> ApiKeyRow | None:
    """The key whose public prefix is `prefix`, revoked or not."""
    result = await conn.execute(_WITH_INDEX.where(api_keys.c.prefix == prefix))
    row = result.one_or_none()
    return None if row is None else _row(row)


async def list_api_keys(conn: AsyncConnection) -> list[ApiKeyRow]:
    """Every key, oldest first."""
    result = await conn.execute(_WITH_INDEX.order_by(api_keys.c.id))
    return [_row(r) for r in result]


async def list_index_users(conn: AsyncConnection, index_id: int) -> list[ApiKeyRow]:
    """The valid user keys of one index, oldest first."""
    result = await conn.execute(
        _WITH_INDEX.where(api_keys.c.index_id == index_id, api_keys.c.revoked_at.is_(None))
        .order_by(api_keys.c.id)
    )
    return [_row(r) for r in result]


async def revoke_index_user(conn: AsyncConnection, index_id: int, prefix: str) -> bool:
    """Revoke one user key of an index; False when it has no valid user with this prefix."""
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.index_id == index_id, api_keys.c.prefix == prefix,
               api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)


async def revoke_api_key(conn: AsyncConnection, prefix: str) -> bool:
    """Mark the key revoked; False when no valid key has this prefix."""
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)


async def count_active_api_keys(conn: AsyncConnection) -> int:
    """How many keys are not revoked."""
    result = await conn.execute(
        select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
    )
    return int(result.scalar_one())
