"""Vector validation, block packing, payloads and distance kernels."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.crypto.envelope import generate_data_key
from app.crypto.index_cipher import IndexCipher
from app.engine.blockstore import (
    entry_blocks,
    open_blocks,
    plan_blocks,
    seal_assigned,
    seal_planned,
)
from app.engine.payload import VectorPlace, decode_payload, encode_fields, with_place
from app.errors import InvalidInput, StoredDataCorrupt
from app.ivf.blocks import (
    BlockEntries,
    block_shape,
    pack_block,
    pack_list_map,
    unpack_list_map,
)
from app.ivf.distance import Metric, exact_distances, scan_scores, smallest
from app.ivf.kmeans import (
    StreamingKMeans,
    auto_n_probes,
    largest_norm,
    lift_vectors,
    mips_centroids,
    nearest_lists,
    probe_lists,
)
from app.ivf.vectors import matrix_from_base64, vector_matrix
from app.store.blocks import BlockRow

finite32 = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def test_vector_rows_become_a_float32_matrix() -> None:
    matrix = vector_matrix([[1, 2], [3, 4]], 2)
    assert matrix.dtype == np.float32 and matrix.shape == (2, 2)


def test_dimension_zero_accepts_any_dimension() -> None:
    assert vector_matrix([[1.0, 2.0, 3.0]], 0).shape == (1, 3)


def test_wrong_dimension_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="expected 3, got 2"):
        vector_matrix([[1.0, 2.0]], 3)


def test_ragged_rows_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        vector_matrix([[1.0, 2.0], [1.0]], 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_invalid_input(bad: float) -> None:
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        vector_matrix([[1.0, bad]], 2)


def test_empty_batch_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        vector_matrix([], 2)


def test_base64_rows_decode_as_little_endian_float32_with_or_without_padding() -> None:
    rows = np.arange(6, dtype="<f4").reshape(2, 3)
    text = base64.b64encode(rows.tobytes()).decode()
    assert np.array_equal(matrix_from_base64(text, 3), rows)
    assert np.array_equal(matrix_from_base64(text.rstrip("="), 3), rows)


def test_base64_with_a_partial_row_is_invalid_input() -> None:
    text = base64.b64encode(np.zeros(5, dtype="<f4").tobytes()).decode()
    with pytest.raises(InvalidInput, match="whole number"):
        matrix_from_base64(text, 3)


def test_invalid_base64_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="base64"):
        matrix_from_base64("!!!!", 1)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(1, 16))
def test_blocks_gathered_into_entries_round_trip(counts: list[int], dimension: int) -> None:
    rng = np.random.default_rng(len(counts) * 100 + dimension)
    vectors = rng.standard_normal((sum(counts), dimension)).astype(np.float32)
    seqs = np.arange(10, 10 + len(vectors), dtype=np.int64)
    entries = BlockEntries(len(vectors), dimension)
    for start, end in itertools.pairwise(np.cumsum([0, *counts])):
        packed = memoryview(pack_block(seqs[start:end], vectors[start:end]))
        assert block_shape(packed) == (end - start, dimension)
        entries.add(packed)
    assert np.array_equal(entries.seqs, seqs)
    assert np.array_equal(entries.vectors, vectors)


def test_a_block_whose_length_disagrees_with_its_header_is_malformed() -> None:
    packed = pack_block(np.arange(3, dtype=np.int64), np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="header"):
        block_shape(packed[:-4])


def test_a_block_of_another_dimension_does_not_fit_the_entries() -> None:
    entries = BlockEntries(3, 4)
    with pytest.raises(ValueError, match="fit"):
        entries.add(memoryview(pack_block(np.arange(3), np.zeros((3, 5), dtype=np.float32))))


def test_more_entries_than_allocated_do_not_fit() -> None:
    entries = BlockEntries(2, 4)
    with pytest.raises(ValueError, match="fit"):
        entries.add(memoryview(pack_block(np.arange(3), np.zeros((3, 4), dtype=np.float32))))


def _sealed_blocks() -> tuple[IndexCipher, np.ndarray, np.ndarray, list[BlockRow]]:
    cipher = IndexCipher(generate_data_key(), 5)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    seqs = np.arange(100, 150, dtype=np.int64)
    lists = rng.integers(0, 4, 50)
    return cipher, seqs, vectors, seal_assigned(cipher, 1, lists, seqs, vectors, block_size=7)


def test_opened_blocks_hold_every_sealed_entry() -> None:
    cipher, seqs, vectors, blocks = _sealed_blocks()
    got_seqs, got_vectors = open_blocks(cipher, blocks)
    order = np.argsort(got_seqs)
    assert np.array_equal(got_seqs[order], seqs)
    assert np.array_equal(got_vectors[order], vectors)


def test_each_sealed_block_holds_the_entries_of_its_list() -> None:
    cipher = IndexCipher(generate_data_key(), 5)
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    seqs = np.arange(200, 260, dtype=np.int64)
    lists = rng.integers(0, 5, 60)
    plans = plan_blocks(lists, seqs, 4)
    blocks = seal_planned(cipher, 1, plans, seqs, vectors)
    for plan, block in zip(plans, blocks, strict=True):
        assert block.block_id == plan.block_id
        assert block.list_tag == cipher.list_tag(1, plan.list_no)
        got_seqs, got_vectors = open_blocks(cipher, [block])
        assert got_seqs.tolist() == seqs[plan.entries].tolist()
        assert np.array_equal(got_vectors, vectors[plan.entries])


def test_a_block_row_that_miscounts_its_vectors_is_corrupt() -> None:
    cipher, _, _, blocks = _sealed_blocks()
    blocks[1] = blocks[1]._replace(n_vectors=blocks[1].n_vectors + 1)
    with pytest.raises(StoredDataCorrupt, match="number of vectors"):
        open_blocks(cipher, blocks)


def test_a_block_moved_to_another_list_fails_authentication() -> None:
    cipher, _, _, blocks = _sealed_blocks()
    other = next(b for b in blocks if b.list_tag != blocks[0].list_tag)
    blocks[0] = blocks[0]._replace(list_tag=other.list_tag)
    with pytest.raises(StoredDataCorrupt, match="authentication"):
        open_blocks(cipher, blocks)


@given(st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 2**31 - 1)), max_size=200))
def test_list_map_page_round_trips(pairs: list[tuple[int, int]]) -> None:
    pairs = sorted(dict(pairs).items())
    seqs = np.asarray([s for s, _ in pairs], dtype=np.int64)
    lists = np.asarray([n for _, n in pairs], dtype=np.int64)
    got_seqs, got_lists = unpack_list_map(pack_list_map(seqs, lists))
    assert got_seqs.tolist() == seqs.tolist() and got_lists.tolist() == lists.tolist()


@given(st.lists(st.integers(0, 6), min_size=1, max_size=300), st.integers(1, 40))
def test_block_plans_cover_every_entry_once_within_its_list(
    lists: list[int], block_size: int
) -> None:
    list_of = np.asarray(lists, dtype=np.int64)
    seqs = np.arange(100, 100 + len(lists), dtype=np.int64)
    plans = plan_blocks(list_of, seqs, block_size)
    covered = np.concatenate([plan.entries for plan in plans])
    assert sorted(covered.tolist()) == list(range(len(lists)))
    for plan in plans:
        assert 0 < len(plan.entries) <= block_size
        assert set(list_of[plan.entries].tolist()) == {plan.list_no}
        assert plan.block_id == seqs[plan.entries[0]]
    placed = entry_blocks(plans, len(lists))
    for plan in plans:
        assert set(placed[plan.entries].tolist()) == {plan.block_id}


def test_no_entries_plan_no_blocks() -> None:
    assert plan_blocks(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 8) == []


def test_payload_round_trips_with_unicode_and_nested_metadata() -> None:
    place = VectorPlace(version=2, list_no=7, block_id=1234)
    fields = encode_fields("ü-1", "héllo", {"a": {"b": [1, 2.5, None, True]}})
    decoded = decode_payload(with_place(fields, place.version, place.list_no, place.block_id))
    assert (decoded.id, decoded.contents, decoded.metadata, decoded.place) == (
        "ü-1", "héllo", {"a": {"b": [1, 2.5, None, True]}}, place
    )


def test_payload_refuses_non_finite_metadata() -> None:
    with pytest.raises(ValueError):
        encode_fields("a", None, {"x": float("nan")})


@pytest.mark.parametrize("metric", list(Metric))
def test_scan_then_exact_rerank_matches_brute_force(metric: Metric) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    query = rng.normal(size=(1, 16)).astype(np.float32)
    v64, q64 = vectors.astype(np.float64), query[0].astype(np.float64)
    if metric is Metric.COSINE:
        brute = 1 - (v64 @ q64) / (np.linalg.norm(v64, axis=1) * np.linalg.norm(q64))
    elif metric is Metric.DOTPRODUCT:
        brute = -(v64 @ q64)
    else:
        brute = ((v64 - q64) ** 2).sum(axis=1)
        if metric is Metric.EUCLIDEAN:
            brute = np.sqrt(brute)
    shortlist = smallest(scan_scores(query, vectors, metric)[0], 30)
    exact = exact_distances(query[0], vectors[shortlist], metric)
    top = shortlist[np.argsort(exact)][:10]
    assert top.tolist() == np.argsort(brute)[:10].tolist()
    assert np.allclose(np.sort(exact)[:10], np.sort(brute)[:10])


@pytest.mark.parametrize("metric", [m for m in Metric if m is not Metric.DOTPRODUCT])
@pytest.mark.parametrize("count", [1, 5])
def test_nearest_lists_are_the_nearest_centroids_nearest_first(metric: Metric, count: int) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    centroids = rng.normal(size=(40, 16)).astype(np.float32)
    if metric is Metric.COSINE:
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    brute = np.stack([exact_distances(v, centroids, metric) for v in vectors])
    assert nearest_lists(vectors, centroids, metric, count).tolist() == (
        np.argsort(brute, axis=1)[:, :count].tolist()
    )


def test_dot_product_distance_is_minus_the_inner_product_and_ranks_longer_vectors_first() -> None:
    vectors = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [-2.0, 1.0]], dtype=np.float32)
    query = np.array([[2.0, 0.5]], dtype=np.float32)
    assert exact_distances(query[0], vectors, Metric.DOTPRODUCT).tolist() == [-2.0, -6.0, -2.5, 3.5]
    assert smallest(scan_scores(query, vectors, Metric.DOTPRODUCT)[0], 4).tolist() == [1, 2, 0, 3]


def _varied_norms(rng: np.random.Generator, n: int, dimension: int) -> np.ndarray:
    """Gaussian directions with lengths spread log-uniformly over 0.1-10."""
    lengths = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(n, 1)))
    directions = rng.normal(size=(n, dimension))
    return np.asarray(directions / np.linalg.norm(directions, axis=1, keepdims=True) * lengths,
                      dtype=np.float32)


def _lifted_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.asarray(((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("count", [1, 5])
def test_dot_product_assigns_a_stored_vector_to_its_nearest_lifted_centroid(count: int) -> None:
    rng = np.random.default_rng(2)
    vectors = _varied_norms(rng, 300, 16)
    norm = largest_norm(vectors)
    lifted = lift_vectors(vectors, norm)
    assert np.allclose(np.linalg.norm(lifted.astype(np.float64), axis=1), norm)
    centers = lifted[rng.choice(300, 40, replace=False)] * np.float32(0.9)
    found = nearest_lists(vectors, mips_centroids(centers, norm), Metric.DOTPRODUCT, count)
    distances = _lifted_distances(lifted.astype(np.float64), centers.astype(np.float64))
    brute = np.argsort(distances, axis=1)[:, :count]
    assert found.tolist() == brute.tolist()


def test_dot_product_probes_lists_by_the_queries_direction_not_their_length() -> None:
    rng = np.random.default_rng(3)
    vectors = _varied_norms(rng, 300, 16)
    norm = largest_norm(vectors)
    centers = lift_vectors(vectors[:40], norm) * np.float32(0.9)
    centroids = mips_centroids(centers, norm)
    queries = _varied_norms(rng, 50, 16)
    probes = probe_lists(queries, centroids, Metric.DOTPRODUCT, 5)
    # The query lifted onto the sphere of radius M: [M q/|q|, 0].
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    lifted = np.hstack([norm * unit.astype(np.float64), np.zeros((50, 1))])
    brute = np.argsort(_lifted_distances(lifted, centers.astype(np.float64)), axis=1)[:, :5]
    assert probes.tolist() == brute.tolist()
    scaled = probe_lists(queries * np.float32(7.0), centroids, Metric.DOTPRODUCT, 5)
    assert scaled.tolist() == probes.tolist()


def test_dot_product_lifts_a_vector_longer_than_the_trained_norm_with_zero() -> None:
    lifted = lift_vectors(np.array([[3.0, 4.0], [0.0, 1.0]], dtype=np.float32), 2.0)
    assert lifted.tolist() == [[3.0, 4.0, 0.0], [0.0, 1.0, pytest.approx(np.sqrt(3.0))]]


def test_dot_product_centroids_carry_the_trained_norm_beside_the_lifted_centroids() -> None:
    kmeans = StreamingKMeans(4, Metric.DOTPRODUCT, batch_size=64, tolerance=1e-6, max_norm=10.0)
    kmeans.feed(_varied_norms(np.random.default_rng(4), 64, 3))
    kmeans.end_pass()
    assert kmeans.centroids.shape == (4, 5)
    assert kmeans.centroids[:, -1].tolist() == [10.0] * 4


@pytest.mark.parametrize(("n_lists", "others", "dot"), [(16, 8, 16), (283, 17, 34), (10, 8, 10)])
def test_dot_product_probes_twice_the_lists_other_metrics_probe_by_default(
    n_lists: int, others: int, dot: int
) -> None:
    assert auto_n_probes(n_lists, Metric.EUCLIDEAN) == others
    assert auto_n_probes(n_lists, Metric.COSINE) == others
    assert auto_n_probes(n_lists, Metric.DOTPRODUCT) == dot


def test_cosine_distance_of_a_zero_vector_is_one() -> None:
    vectors = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    distances = exact_distances(np.array([1.0, 0.0], dtype=np.float32), vectors, Metric.COSINE)
    assert distances.tolist() == [1.0, 0.0]


def test_smallest_returns_ascending_positions() -> None:
    scores = np.array([5, 1, 4, 2, 3], dtype=np.float32)
    assert smallest(scores, 3).tolist() == [1, 3, 4]
    assert smallest(scores, 10).tolist() == [1, 3, 4, 2, 0]
