"""Request fields shared by every index-addressed route."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

IndexName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
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
