"""Request fields shared by every index-addressed route."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from pydantic_core import PydanticCustomError

# The name of an existing index, as every route that looks one up takes it. Looser
# than NewIndexName: indexes created before that rule stay reachable by their names.
IndexName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
]

INDEX_NAME_RULE = (
    "index names are printable characters without '/' or '\\', without control, bidi "
    "or zero-width characters, with spaces only inside, and not '.' or '..'"
)


def _addressable(name: str) -> str:
    """`name` if every route can address it, in a body or a URL path, through any client.

    A URL path is where names break: `/` (even as %2F) splits the path, a client
    removes `.` and `..` segments before sending (urllib3 and httpx both do),
    and some proxies read `\\` as `/`. `str.isprintable` refuses Unicode's
    control, format (bidi, zero-width), surrogate, private-use, unassigned and
    separator characters except the ASCII space, which may not lead or trail.
    """
    if (not name.isprintable() or name != name.strip() or "/" in name or "\\" in name
            or name in {".", ".."}):
        raise PydanticCustomError("index_name", INDEX_NAME_RULE)
    return name


NewIndexName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    AfterValidator(_addressable),
    Field(description=f"1-128 characters; {INDEX_NAME_RULE}."),
]

IndexKeyHex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{64}$"),
    Field(description="The index's 32-byte key, hex-encoded (64 characters)."),
]


def key_from_hex(value: str | None) -> bytes | None:
    """A validated hex key field (or header) as bytes; None when it was not sent."""
    return bytes.fromhex(value) if value else None


class IndexOperationRequest(BaseModel):
    """`index_name` plus the key that opens it."""

    index_name: IndexName
    index_key: IndexKeyHex | None = None

    def key_bytes(self) -> bytes | None:
        """The decoded index key, if one was sent."""
        return key_from_hex(self.index_key)


class SuccessResponse(BaseModel):
    """`{"status": "success", "message": ...}`."""

    status: str = "success"
    message: str


class ErrorResponse(BaseModel):
    """Every error: `{"detail": "..."}`; a request that does not parse gets pydantic's
    list of problems as its detail instead of a message."""

    detail: str | list[dict[str, Any]]
