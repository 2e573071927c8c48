"""Plaintext layout of an item payload (before encryption).

Little-endian: `u8 format | u16 id length | id | u32 contents length | contents |
u32 metadata length | metadata JSON | float32 vector`. The id, contents and
metadata travel with the vector in one ciphertext per row, so a point read
costs one decryption; JSON is only paid for items that carry metadata.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.ivf.vectors import Matrix

_FORMAT = 1
_HEAD = struct.Struct("<BH")
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class ItemPayload:
    """One item as stored: id, optional contents and metadata, and its vector."""

    id: str
    vector: Matrix
    contents: str | None = None
    metadata: dict[str, Any] | None = None


def encode_payload(item: ItemPayload) -> bytes:
    """Serialize an item for encryption; non-finite metadata numbers raise ValueError."""
    ident = item.id.encode()
    contents = item.contents.encode() if item.contents else b""
    metadata = (
        json.dumps(item.metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        .encode()
        if item.metadata
        else b""
    )
    return b"".join((
        _HEAD.pack(_FORMAT, len(ident)), ident,
        _LENGTH.pack(len(contents)), contents,
        _LENGTH.pack(len(metadata)), metadata,
        item.vector.astype("<f4", copy=False).tobytes(),
    ))


def decode_payload(data: bytes) -> ItemPayload:
    """Parse a decrypted payload."""
    fmt, id_length = _HEAD.unpack_from(data)
    if fmt != _FORMAT:
        raise ValueError(f"unknown payload format {fmt}")
    offset = _HEAD.size
    ident = data[offset : offset + id_length].decode()
    offset += id_length
    (contents_length,) = _LENGTH.unpack_from(data, offset)
    offset += _LENGTH.size
    contents = data[offset : offset + contents_length].decode() if contents_length else None
    offset += contents_length
    (metadata_length,) = _LENGTH.unpack_from(data, offset)
    offset += _LENGTH.size
    metadata = json.loads(data[offset : offset + metadata_length]) if metadata_length else None
    offset += metadata_length
    vector = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
    return ItemPayload(id=ident, vector=vector, contents=contents, metadata=metadata)
