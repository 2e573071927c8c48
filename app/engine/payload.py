"""Plaintext layout of an item payload (before encryption).

Little-endian: `u8 format | u16 id length | id | u32 contents length | contents |
u32 metadata length | metadata JSON | tail`. The id, contents and metadata
travel in one ciphertext per row, so a point read costs one decryption; JSON is
only paid for items that carry metadata.

The tail depends on the format:
- 2 (written now): where the vector was written, `u32 version | u32 list | i64 block`.
  The vector itself is stored once, in its inverted list's block; see
  app.engine.places for how a read finds it.
- 1 (written before): the vector itself, float32. Such rows are still read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.ivf.vectors import Matrix

_WITH_PLACE = 2
_WITH_VECTOR = 1
_HEAD = struct.Struct("<BH")
_LENGTH = struct.Struct("<I")
_PLACE = struct.Struct("<IIq")


@dataclass(frozen=True, slots=True)
class VectorPlace:
    """Where an item's vector was written: index version, inverted list and block."""

    version: int
    list_no: int
    block_id: int


@dataclass(frozen=True, slots=True)
class ItemPayload:
    """One item as stored: id, optional contents and metadata, and its vector or
    the place it was written (whichever the row holds)."""

    id: str
    vector: Matrix | None
    contents: str | None = None
    metadata: dict[str, Any] | None = None
    place: VectorPlace | None = None


def encode_fields(item_id: str, contents: str | None, metadata: dict[str, Any] | None) -> bytes:
    """The payload up to its tail; non-finite metadata numbers raise ValueError."""
    ident = item_id.encode()
    text = contents.encode() if contents else b""
    meta = (
        json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        if metadata
        else b""
    )
    return b"".join((
        _HEAD.pack(_WITH_PLACE, len(ident)), ident,
        _LENGTH.pack(len(text)), text,
        _LENGTH.pack(len(meta)), meta,
    ))


def fields_size(fields: bytes) -> int:
    """Bytes of contents and metadata in an `encode_fields` result."""
    _, id_length = _HEAD.unpack_from(fields)
    return len(fields) - _HEAD.size - int(id_length) - 2 * _LENGTH.size


def with_place(fields: bytes, version: int, list_no: int, block_id: int) -> bytes:
    """A whole payload: `encode_fields` output followed by the vector's place
    (given as numbers: a VectorPlace per item cost more than the packing)."""
    return fields + _PLACE.pack(version, list_no, block_id)


def payload_id(data: bytes) -> str:
    """The item id of a decrypted payload, without parsing the rest."""
    fmt, id_length = _HEAD.unpack_from(data)
    if fmt not in (_WITH_PLACE, _WITH_VECTOR):
        raise ValueError(f"unknown payload format {fmt}")
    return data[_HEAD.size : _HEAD.size + id_length].decode()


def decode_payload(data: bytes) -> ItemPayload:
    """Parse a decrypted payload of either format."""
    fmt, id_length = _HEAD.unpack_from(data)
    if fmt not in (_WITH_PLACE, _WITH_VECTOR):
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
    if fmt == _WITH_VECTOR:
        vector = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
        return ItemPayload(id=ident, vector=vector, contents=contents, metadata=metadata)
    place = VectorPlace(*_PLACE.unpack_from(data, offset))
    return ItemPayload(id=ident, vector=None, contents=contents, metadata=metadata, place=place)
