"""The one value type for vectors: a validated, C-contiguous float32 matrix.

Search scores vectors in float32. A vector is accepted only if its squared L2
norm (computed in float64) is at most float32 max / 4 (8.5e37; a lone
component up to about 9.2e18). Then for any two accepted vectors a and b,
|a|^2 and |a.b| <= |a||b| are at most 1/4 of float32 max, the Euclidean scan
score |a|^2 - 2 a.b at most 3/4, and |a-b|^2 <= 2|a|^2 + 2|b|^2 at most all
of it: every metric's kernel ranks without overflow, and so does k-means, whose
centroids are averages of accepted vectors. The dot product's score -a.b is at
most 1/4 too, and its lifted vectors and queries (app.ivf.kmeans) lie on the
sphere of radius M, the longest trained vector, so their scores are bounded
like the Euclidean ones. (At float32 max / 2 the scan score of two opposite
vectors overflows.)
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pybase64

from app.errors import InvalidInput

Matrix = npt.NDArray[np.float32]

MAX_SQUARED_NORM = float(np.finfo(np.float32).max) / 4


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
    _check_norms(matrix)
    return np.ascontiguousarray(matrix)


def _check_norms(matrix: npt.NDArray[np.float32]) -> None:
    """Refuse rows whose squared L2 norm exceeds MAX_SQUARED_NORM (see the module docstring)."""
    with np.errstate(over="ignore"):
        squared = np.einsum("ij,ij->i", matrix, matrix)
    # float32 sums of squares are off by far less than 2x (or overflow): only
    # rows that may be near the bound are measured again in float64 (all rows
    # in float64 took 79 us for 1,000 x 128, this 20 us).
    suspects = np.flatnonzero(~(squared <= MAX_SQUARED_NORM / 2))
    rows = matrix[suspects]
    over = suspects[np.einsum("ij,ij->i", rows, rows, dtype=np.float64) > MAX_SQUARED_NORM]
    if over.size:
        raise InvalidInput(
            f"Vectors must have a squared L2 norm of at most {MAX_SQUARED_NORM:.4g} "
            f"(float32 max / 4), so that distances stay finite in float32; vector {over[0]} "
            "exceeds it"
        )


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
