"""Metadata terms: an index lookup built from a filter's terms never misses a match."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.filters import compile_filter
from app.metadata_terms import (
    MAX_TERMS_PER_ITEM,
    OVERFLOW,
    canonical_value,
    filter_clauses,
    item_terms,
)


def _everything(path: str) -> bool:
    return True


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0]),
    st.sampled_from(["a", "b", "c", ""]),
)
fields = st.sampled_from(["x", "y", "loc.city"])
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def _metadata(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["x", "y", "loc"]), unique=True)):
        out[name] = {"city": draw(values)} if name == "loc" else draw(values)
    return out


leaf_filters = st.one_of(
    st.builds(lambda f, v: {f: v}, fields, scalars),
    st.builds(lambda f, v: {f: {"$eq": v}}, fields, scalars),
    st.builds(lambda f, vs: {f: {"$in": vs}}, fields, st.lists(scalars, min_size=1, max_size=3)),
    st.builds(lambda f, v: {f: {"$gt": v}}, fields, st.integers(-3, 3)),
    st.builds(lambda f, v: {f: {"$ne": v}}, fields, scalars),
)
filters = st.recursive(
    leaf_filters,
    lambda inner: st.one_of(
        st.builds(lambda cs: {"$and": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"$or": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), doc=filters)
def test_a_matching_item_holds_a_term_of_every_clause(data: st.DataObject, doc: Any) -> None:
    metadata = _metadata(data.draw)
    clauses = filter_clauses(doc, _everything)
    if clauses is None or not compile_filter(doc)(metadata):
        return
    terms = item_terms(metadata, _everything)
    assert all(terms & clause for clause in clauses)


def test_equal_numbers_are_one_term_and_a_bool_is_not_a_number() -> None:
    assert canonical_value(1) == canonical_value(1.0)
    assert canonical_value(True) != canonical_value(1)
    assert canonical_value(0.5) != canonical_value(0)


def test_list_elements_are_terms_of_the_list_field() -> None:
    assert item_terms({"tags": ["a", "b"]}, _everything) == {
        ("tags", canonical_value("a")), ("tags", canonical_value("b")),
    }


def test_nested_objects_give_dot_paths() -> None:
    assert item_terms({"loc": {"city": "Oslo"}}, _everything) == {
        ("loc.city", canonical_value("Oslo")),
    }


def test_an_item_with_too_many_terms_is_indexed_as_overflow() -> None:
    metadata = {"tags": [f"t{i}" for i in range(MAX_TERMS_PER_ITEM + 1)]}
    assert item_terms(metadata, _everything) == {OVERFLOW}


def test_fields_outside_the_index_give_no_terms_and_no_clauses() -> None:
    hidden = lambda path: not path.startswith("body")  # noqa: E731
    assert item_terms({"body": "x", "n": 1}, hidden) == {("n", canonical_value(1))}
    assert filter_clauses({"body": "x"}, hidden) is None


def test_a_range_alone_cannot_be_answered_from_the_index() -> None:
    assert filter_clauses({"n": {"$gt": 1}}, _everything) is None


def test_an_or_with_an_unanswerable_branch_cannot_be_answered() -> None:
    assert filter_clauses({"$or": [{"a": 1}, {"n": {"$gt": 1}}]}, _everything) is None


def test_and_keeps_the_answerable_parts() -> None:
    clauses = filter_clauses({"a": 1, "n": {"$gt": 1}}, _everything)
    assert clauses == [frozenset({("a", canonical_value(1))})]
