"""Plaintext layouts of packed entries: vector blocks and list-map pages.

A vector block holds many (sequence, vector) entries, little-endian: count u32,
dimension u32, `count` int64 write sequences, then `count x dimension` float32
values. One block is encrypted with one AEAD call, so a search pays one
decryption per block, not per vector.

A list-map page holds (sequence, list) pairs sorted by sequence: count u32,
`count` int64 sequences, then `count` int32 list numbers.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from app.ivf.vectors import Matrix

_HEADER = struct.Struct("<II")
_COUNT = struct.Struct("<I")
Seqs = npt.NDArray[np.int64]


def pack_block(seqs: Seqs, vectors: Matrix) -> bytes:
    """Serialize entries; `seqs[i]` is the write sequence of `vectors[i]`."""
    count, dimension = vectors.shape
    if seqs.shape != (count,):
        raise ValueError("one sequence per vector")
    return b"".join(
        (
            _HEADER.pack(count, dimension),
            seqs.astype("<i8", copy=False).tobytes(),
            vectors.astype("<f4", copy=False).tobytes(),
        )
    )


def unpack_block(data: bytes | memoryview) -> tuple[Seqs, Matrix]:
    """Parse a block back into (seqs, vectors) without copying."""
    count, dimension = _HEADER.unpack_from(data)
    offset = _HEADER.size
    seqs = np.frombuffer(data, dtype="<i8", count=count, offset=offset)
    offset += 8 * count
    vectors = np.frombuffer(data, dtype="<f4", count=count * dimension, offset=offset)
    return seqs.astype(np.int64, copy=False), vectors.reshape(count, dimension)


def pack_list_map(seqs: Seqs, lists: npt.NDArray[np.int64]) -> bytes:
    """Serialize (sequence, list) pairs; `seqs` must be ascending."""
    if seqs.shape != lists.shape:
        raise ValueError("one list per sequence")
    return b"".join(
        (_COUNT.pack(len(seqs)), seqs.astype("<i8").tobytes(), lists.astype("<i4").tobytes())
    )


def unpack_list_map(data: bytes) -> tuple[Seqs, npt.NDArray[np.int64]]:
    """Parse a list-map page into (ascending sequences, their lists)."""
    (count,) = _COUNT.unpack_from(data)
    seqs = np.frombuffer(data, dtype="<i8", count=count, offset=_COUNT.size)
    lists = np.frombuffer(data, dtype="<i4", count=count, offset=_COUNT.size + 8 * count)
    return seqs.astype(np.int64), lists.astype(np.int64)
