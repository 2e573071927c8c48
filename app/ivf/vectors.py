"""The one value type for vectors: a validated, C-contiguous float32 matrix."""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pybase64

from app.errors import InvalidInput

Matrix = npt.NDArray[np.float32]


def vector_matrix(rows: Sequence[Sequence[float]] | Matrix, dimension: int) -> Matrix:
    """Validate rows against `dimension` (0 = any, taken from the rows) and pack them."""
    if len(rows) == 0:
        raise InvalidInput("No vectors given")
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        expected = dimension or len(rows[0])
        for position, row in enumerate(rows):
            if len(row) != expected:
                raise InvalidInput(
                    f"Vector dimension mismatch: expected {expected}, got {len(row)} "
                    f"(vector {position})"
                ) from exc
        raise InvalidInput("Vectors must be lists of numbers") from exc
    return checked_matrix(matrix, dimension)


def checked_matrix(matrix: npt.NDArray[np.float32], dimension: int) -> Matrix:
    """Check shape and finiteness of a float32 matrix against `dimension` (0 = any)."""
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise InvalidInput("Vectors must be equal-length, non-empty lists of numbers")
    if dimension and matrix.shape[1] != dimension:
        raise InvalidInput(
            f"Vector dimension mismatch: expected {dimension}, got {matrix.shape[1]}"
        )
    if not np.isfinite(matrix).all():
        raise InvalidInput("Vectors must not contain NaN or infinite values")
    return np.ascontiguousarray(matrix)


def matrix_from_base64(data: str, dimension: int) -> Matrix:
    """Decode little-endian float32 rows sent as base64 (padding optional)."""
    if dimension <= 0:
        raise InvalidInput("dimension must be positive")
    try:
        raw = pybase64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("vectors_b64 is not valid base64") from exc
    row_bytes = 4 * dimension
    if not raw or len(raw) % row_bytes:
        raise InvalidInput(
            f"vectors_b64 holds {len(raw)} bytes, not a whole number of {dimension}-d float32 rows"
        )
    matrix = np.frombuffer(raw, dtype="<f4").reshape(-1, dimension).astype(np.float32)
    return checked_matrix(matrix, dimension)
