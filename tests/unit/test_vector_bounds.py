"""Vectors whose distances would overflow float32 are refused; every accepted pair
scores finitely in the float32 kernels; tiny vectors keep their direction under cosine."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.ivf.distance import Metric, exact_distances, scan_scores, smallest
from app.ivf.kmeans import (
    largest_norm,
    lift_vectors,
    mips_centroids,
    nearest_lists,
    prepare,
    probe_lists,
)
from app.ivf.vectors import MAX_SQUARED_NORM, matrix_from_base64, vector_matrix
from tests.support.vectors import scaled_to

FLOAT32_MAX = float(np.finfo(np.float32).max)


def test_the_bound_is_a_quarter_of_float32_max() -> None:
    assert MAX_SQUARED_NORM == FLOAT32_MAX / 4


def test_a_vector_of_3e38_is_invalid_input_naming_the_rule_and_the_bound() -> None:
    with pytest.raises(InvalidInput) as refused:
        vector_matrix([[1.0, 2.0, 3.0], [3e38] * 3], 3)
    detail = refused.value.detail
    assert "squared L2 norm" in detail and "float32 max / 4" in detail
    assert f"{MAX_SQUARED_NORM:.4g}" in detail
    assert "vector 1" in detail
    assert "3e+38" not in detail and "3e38" not in detail


def test_a_base64_vector_over_the_bound_is_invalid_input() -> None:
    data = base64.b64encode(np.full((1, 4), 2e19, dtype="<f4").tobytes()).decode()
    with pytest.raises(InvalidInput, match="squared L2 norm"):
        matrix_from_base64(data, 4)


def test_a_vector_just_inside_the_bound_is_accepted() -> None:
    vector = scaled_to([1.0, -2.0, 3.0, 0.5], MAX_SQUARED_NORM)
    assert vector_matrix([vector], 4).shape == (1, 4)


directions = st.lists(
    st.floats(-1.0, 1.0, allow_nan=False, width=32), min_size=3, max_size=3
).filter(lambda d: sum(x * x for x in d) > 1e-6)
scales = st.floats(0.0, 1.0, allow_nan=False)


def _rows_up_to_the_bound(
    query: list[float], others: list[tuple[list[float], float]], sign: float
) -> np.ndarray:
    """The query's direction at the bound (last row), its antipode or itself again
    (first row), and the others scaled to their fraction of the bound, as accepted."""
    at_bound = scaled_to(query, MAX_SQUARED_NORM)
    antipode = [sign * -x for x in at_bound]
    rows = [antipode, *(scaled_to(d, s * MAX_SQUARED_NORM) for d, s in others), at_bound]
    return vector_matrix(rows, 3)


@pytest.mark.parametrize("metric", [m for m in Metric if m is not Metric.DOTPRODUCT])
@given(
    query=directions, others=st.lists(st.tuples(directions, scales), min_size=1, max_size=6),
    sign=st.sampled_from([1.0, -1.0]),
)
# A neighbour 1e-5 shorter than the query at the bound: closer than a float32 scan resolves.
@example(query=[0.25, 1.0, 0.0], others=[([0.25, 1.0, 0.0], 0.99999)], sign=-1.0)
def test_accepted_vectors_score_finitely_and_a_vector_finds_itself_first(
    metric: Metric, query: list[float], others: list[tuple[list[float], float]], sign: float
) -> None:
    vectors = _rows_up_to_the_bound(query, others, sign)
    q = vectors[-1:]

    scores = scan_scores(q, vectors, metric)[0]
    assert np.isfinite(scores).all()
    assert np.isfinite(exact_distances(q[0], vectors, metric)).all()
    # Near-ties closer than float32 resolves may come in either order.
    if metric is Metric.COSINE:
        exact, slack = exact_distances(q[0], vectors, metric), 1e-5
    else:
        # The scan's |v|^2 - 2 q.v resolves about 1e-7 of the squared lengths in it.
        exact = exact_distances(q[0], vectors, Metric.SQUARED_EUCLIDEAN)
        lengths = np.square(vectors.astype(np.float64)).sum(axis=1)
        slack = 1e-5 * float(max(exact.max(), lengths.max()))
    nearest_enough = np.flatnonzero(exact <= exact.min() + slack)
    assert smallest(scores, 1)[0] in nearest_enough
    # The vectors as centroids (as training would leave them: unit length for cosine).
    assert nearest_lists(q, prepare(vectors, metric), metric)[0, 0] in nearest_enough


@given(
    query=directions, others=st.lists(st.tuples(directions, scales), min_size=1, max_size=6),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_dot_products_of_accepted_vectors_and_their_lift_score_finitely(
    query: list[float], others: list[tuple[list[float], float]], sign: float
) -> None:
    # |q.v| <= |q||v| is within the bound, and the lifted vectors, queries and
    # centroids all lie within the sphere of radius M, M^2 <= the bound.
    vectors = _rows_up_to_the_bound(query, others, sign)
    q = vectors[-1:]

    scores = scan_scores(q, vectors, Metric.DOTPRODUCT)[0]
    exact = exact_distances(q[0], vectors, Metric.DOTPRODUCT)
    assert np.isfinite(scores).all() and np.isfinite(exact).all()
    slack = 1e-5 * float(np.abs(exact).max())
    assert smallest(scores, 1)[0] in np.flatnonzero(exact <= exact.min() + slack)

    norm = largest_norm(vectors)
    lifted = lift_vectors(vectors, norm)
    assert np.isfinite(lifted).all()
    centroids = mips_centroids(lifted, norm)
    own = nearest_lists(vectors, centroids, Metric.DOTPRODUCT)[:, 0]
    l64 = lifted.astype(np.float64)
    gaps = ((l64[own] - l64) ** 2).sum(axis=1)
    assert (gaps <= 1e-5 * 4 * norm * norm).all()
    probe = probe_lists(q, centroids, Metric.DOTPRODUCT, 1)[0, 0]
    assert probe in np.flatnonzero(exact <= exact.min() + slack)


@pytest.mark.parametrize("tiny", [1e-30, 1e-40], ids=["normal", "subnormal"])
def test_cosine_ranks_a_tiny_vector_by_its_direction(tiny: float) -> None:
    vectors = vector_matrix([[1.0, -0.5], [tiny, tiny]], 2)
    query = vector_matrix([[1.0, 1.0]], 2)
    assert smallest(scan_scores(query, vectors, Metric.COSINE)[0], 2).tolist() == [1, 0]


@pytest.mark.parametrize("tiny", [1e-30, 1e-40], ids=["normal", "subnormal"])
def test_cosine_assigns_a_tiny_vector_to_the_centroid_of_its_direction(tiny: float) -> None:
    centroids = vector_matrix([[1.0, 0.0], [0.0, 1.0]], 2)
    assert nearest_lists(vector_matrix([[0.0, tiny]], 2), centroids, Metric.COSINE)[0, 0] == 1


def test_a_zero_vector_is_at_cosine_distance_one_from_everything() -> None:
    vectors = vector_matrix([[0.0, 0.0], [1.0, 1.0]], 2)
    query = vector_matrix([[1.0, 0.0]], 2)
    scores = scan_scores(query, vectors, Metric.COSINE)[0]
    assert scores[0] == 0.0
    assert exact_distances(query[0], vectors, Metric.COSINE)[0] == 1.0
