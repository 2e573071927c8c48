"""Plaintext layout of an item payload (before encryption).

`0x01 | u32 json length | JSON {"id", "c"?, "m"?} | float32 vector bytes`:
the id, contents and metadata travel together with the vector in one
ciphertext per row, so a point read costs one decryption.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.ivf.vectors import Matrix

_FORMAT = 1
_HEADER = struct.Struct("<BI")


@dataclass(frozen=True, slots=True)
class ItemPayload:
    """One item as stored: id, optional contents and metadata, and its vector."""

    id: str
    vector: Matrix
    contents: str | None = None
    metadata: dict[str, Any] | None = None


def encode_payload(item: ItemPayload) -> bytes:
    """Serialize an item for encryption."""
    doc: dict[str, Any] = {"id": item.id}
    if item.contents:
        doc["c"] = item.contents
    if item.metadata:
        doc["m"] = item.metadata
    head = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return _HEADER.pack(_FORMAT, len(head)) + head + item.vector.astype("<f4").tobytes()


def decode_payload(data: bytes) -> ItemPayload:
    """Parse a decrypted payload."""
    fmt, head_len = _HEADER.unpack_from(data)
    if fmt != _FORMAT:
        raise ValueError(f"unknown payload format {fmt}")
    start = _HEADER.size
    doc = json.loads(data[start : start + head_len])
    vector = np.frombuffer(data, dtype="<f4", offset=start + head_len).astype(np.float32)
    return ItemPayload(id=doc["id"], vector=vector, contents=doc.get("c"), metadata=doc.get("m"))
