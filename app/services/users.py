"""Per-index users: API keys limited to one index and a permission set.

A user key is an ordinary API key (stored as a SHA-256 hash) whose row names
its index and permissions; deleting the index deletes its users. Managing
users takes a tenant key or a user key with `admin` on that index (which may
grant only permissions it holds), and, for an index opened by a client key,
that key (the reference's X-Index-Key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import BadRequest, IndexNotFound, UserNotFound
from app.services.auth import Permission, Principal, mint_api_key
from app.services.context import ServiceContext
from app.services.indexes import find_row, open_row
from app.store import api_keys as key_repo
from app.store import indexes as index_repo
from app.store.indexes import IndexRow

_ALLOWED = [p.value for p in Permission]
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True, slots=True)
class NewUser:
    """A minted user: `api_key` is the only copy of the key."""

    user_id: str
    api_key: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as list_users shows it."""

    user_id: str
    permissions: list[str]


def parse_permissions(names: list[str]) -> frozenset[Permission]:
    """A non-empty set of known permissions, or 400 as the reference words it."""
    bad = [name for name in names if name not in _ALLOWED]
    if bad:
        raise BadRequest(f"invalid permissions {bad}; allowed: {_ALLOWED}")
    if not names:
        raise BadRequest("permissions must name at least one of " + str(_ALLOWED))
    return frozenset(Permission(name) for name in names)


async def _managed_index(
    ctx: ServiceContext, caller: Principal, index_name: str, index_key: bytes | None
) -> IndexRow:
    """The index whose users the caller manages; its key (if a client key) must open it."""
    caller.authorize(index_name, Permission.ADMIN)
    async with ctx.db.transaction() as conn:
        row = await find_row(conn, caller.tenant, index_name)
    await open_row(ctx, row, index_key)
    return row


async def create_user(
    ctx: ServiceContext,
    caller: Principal,
    index_name: str,
    permissions: list[str],
    index_key: bytes | None,
) -> NewUser:
    """Mint a user key for one index, with no permission the caller lacks."""
    granted = parse_permissions(permissions)
    caller.authorize_grant(index_name, granted)
    row = await _managed_index(ctx, caller, index_name, index_key)
    async with ctx.db.transaction() as conn:
        # The key was checked outside this transaction (a KMS call may be slow):
        # make sure the index is still there, and stays until the key is stored.
        if not await index_repo.keep_index(conn, row.id):
            raise IndexNotFound(index_name)
        new = await mint_api_key(
            conn, name=f"user of {index_name}", tenant=row.tenant, index_id=row.id,
            permissions=granted,
        )
    return NewUser(user_id=new.row.prefix, api_key=new.secret)


async def list_users(
    ctx: ServiceContext, caller: Principal, index_name: str, index_key: bytes | None
) -> list[UserInfo]:
    """The index's valid users."""
    row = await _managed_index(ctx, caller, index_name, index_key)
    async with ctx.db.transaction() as conn:
        users = await key_repo.list_index_users(conn, row.id)
    return [UserInfo(user_id=u.prefix, permissions=list(u.permissions or ())) for u in users]


async def delete_user(
    ctx: ServiceContext,
    caller: Principal,
    index_name: str,
    user_id: str,
    index_key: bytes | None,
) -> None:
    """Revoke a user key; it stops working everywhere within the API key cache TTL."""
    if not _HEX.match(user_id):
        raise BadRequest("user_id must be hex")
    row = await _managed_index(ctx, caller, index_name, index_key)
    async with ctx.db.transaction() as conn:
        if not await key_repo.revoke_index_user(conn, row.id, user_id.lower()):
            raise UserNotFound(f"User '{user_id}' not found for index '{index_name}'")
    ctx.api_keys.forget(user_id.lower())
