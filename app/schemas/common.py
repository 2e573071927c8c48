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


class IndexOperationRequest(BaseModel):
    """`index_name` plus the key that opens it."""

    index_name: IndexName
    index_key: IndexKeyHex | None = None

    def key_bytes(self) -> bytes | None:
        """The decoded index key, if one was sent."""
        return bytes.fromhex(self.index_key) if self.index_key is not None else None


class SuccessResponse(BaseModel):
    """`{"status": "success", "message": ...}`."""

    status: str = "success"
    message: str


class ErrorResponse(BaseModel):
    """Every error: `{"detail": "..."}`; a request that does not parse gets pydantic's
    list of problems as its detail instead of a message."""

    detail: str | list[dict[str, Any]]
