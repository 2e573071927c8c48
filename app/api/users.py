"""Routes of /v1/indexes/{index_name}/users: per-index user keys."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from app.api.deps import Caller, Context
from app.api.json_body import FastJsonRoute
from app.errors import BadRequest
from app.schemas.common import IndexName, key_from_hex
from app.schemas.indexes import (
    CreateUserRequest,
    CreateUserResponse,
    UserEntry,
    UserListResponse,
)
from app.services import users as service

router = APIRouter(prefix="/indexes/{index_name}/users", tags=["users"], route_class=FastJsonRoute)

_KEY_HEX = re.compile(r"^[0-9a-fA-F]{64}$")

# Validated like index names in bodies: PostgreSQL text cannot hold a NUL.
IndexNamePath = Annotated[IndexName, Path(description="Name of the index.")]

IndexKeyHeader = Annotated[
    str | None,
    Header(alias="X-Index-Key", description="The index's key (hex), for SDK-key indexes."),
]


def _header_key(value: str | None) -> bytes | None:
    if value and not _KEY_HEX.match(value):
        raise BadRequest("X-Index-Key must be the index key as 64 hex characters")
    return key_from_hex(value)


@router.post("", response_model=CreateUserResponse)
async def create_user(
    index_name: IndexNamePath, body: CreateUserRequest, ctx: Context, caller: Caller
) -> CreateUserResponse:
    """Mint an API key limited to this index and the given permissions."""
    key = key_from_hex(body.index_key)
    new = await service.create_user(ctx, caller, index_name, body.permissions, key)
    return CreateUserResponse(user_id=new.user_id, api_key=new.api_key)


@router.get("", response_model=UserListResponse)
async def list_users(
    index_name: IndexNamePath, ctx: Context, caller: Caller, x_index_key: IndexKeyHeader = None
) -> UserListResponse:
    """The index's users and their permissions."""
    found = await service.list_users(ctx, caller, index_name, _header_key(x_index_key))
    return UserListResponse(
        users=[UserEntry(user_id=u.user_id, permissions=u.permissions) for u in found]
    )


@router.delete("/{user_id}", status_code=204, response_class=Response)
async def delete_user(
    index_name: IndexNamePath, user_id: str, ctx: Context, caller: Caller,
    x_index_key: IndexKeyHeader = None,
) -> Response:
    """Revoke a user's key."""
    await service.delete_user(ctx, caller, index_name, user_id, _header_key(x_index_key))
    # The reference answers 204 with an empty body but a JSON content type.
    return Response(status_code=204, media_type="application/json")
