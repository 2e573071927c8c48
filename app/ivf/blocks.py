"""Plaintext layout of a vector block: many (sequence, vector) entries in one buffer.

Layout, little-endian: count u32, dimension u32, `count` int64 write
sequences, then `count x dimension` float32 values. One block is encrypted
with one AEAD call, so a search pays one decryption per block, not per vector.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from app.ivf.vectors import Matrix

_HEADER = struct.Struct("<II")
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


def unpack_block(data: bytes) -> tuple[Seqs, Matrix]:
    """Parse a block back into (seqs, vectors) without copying."""
    count, dimension = _HEADER.unpack_from(data)
    offset = _HEADER.size
    seqs = np.frombuffer(data, dtype="<i8", count=count, offset=offset)
    offset += 8 * count
    vectors = np.frombuffer(data, dtype="<f4", count=count * dimension, offset=offset)
    return seqs.astype(np.int64, copy=False), vectors.reshape(count, dimension)
