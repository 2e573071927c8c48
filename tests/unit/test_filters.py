"""Metadata filters: what each operator matches, what is refused at compile time,
and algebraic properties checked on generated filters and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.filters import MATCH_ALL, MAX_DEPTH, MAX_NODES, FilterError, compile_filter


def match(spec: Mapping[str, Any], metadata: Mapping[str, object]) -> bool:
    return compile_filter(spec)(metadata)


SONG = {"genre": "jazz", "year": 1999, "tags": ["x", "y"], "loc": {"city": "Oslo"}}


# Structure: bare values, paths, implicit AND


def test_none_and_empty_filters_compile_to_match_all() -> None:
    assert compile_filter(None) is MATCH_ALL
    assert compile_filter({}) is MATCH_ALL
    assert MATCH_ALL({}) and MATCH_ALL(SONG)


def test_a_non_empty_filter_is_not_match_all() -> None:
    assert compile_filter({"genre": "jazz"}) is not MATCH_ALL


def test_bare_value_means_equality() -> None:
    assert match({"genre": "jazz"}, SONG)
    assert not match({"genre": "pop"}, SONG)


def test_several_keys_are_anded() -> None:
    assert match({"genre": "jazz", "year": 1999}, SONG)
    assert not match({"genre": "jazz", "year": 2000}, SONG)


def test_dot_path_reaches_into_nested_objects() -> None:
    assert match({"loc.city": "Oslo"}, SONG)
    assert not match({"loc.city": "Bergen"}, SONG)


def test_path_through_a_non_object_is_absent() -> None:
    assert match({"genre.name": {"$exists": False}}, SONG)
    assert match({"tags.0": {"$exists": False}}, SONG)


def test_plain_object_value_means_equality_with_that_object() -> None:
    assert match({"loc": {"city": "Oslo"}}, SONG)
    assert not match({"loc": {"city": "Oslo", "zip": 1}}, SONG)


def test_object_equality_ignores_key_order() -> None:
    assert match({"o": {"b": 2, "a": 1}}, {"o": {"a": 1, "b": 2}})


def test_several_operators_on_one_field_are_anded() -> None:
    assert match({"year": {"$gte": 1990, "$lt": 2000}}, SONG)
    assert not match({"year": {"$gte": 1990, "$lt": 1999}}, SONG)


# Equality


def test_eq_operator_means_equality() -> None:
    assert match({"genre": {"$eq": "jazz"}}, SONG)
    assert not match({"genre": {"$eq": "pop"}}, SONG)


def test_eq_on_a_stored_list_matches_any_element() -> None:
    assert match({"tags": "y"}, SONG)
    assert not match({"tags": "z"}, SONG)


def test_eq_with_a_list_operand_matches_the_whole_list_only() -> None:
    assert match({"tags": ["x", "y"]}, SONG)
    assert not match({"tags": ["y", "x"]}, SONG)
    assert not match({"tags": ["x"]}, SONG)


def test_int_equals_float_of_same_value() -> None:
    assert match({"year": 1999.0}, SONG)
    assert match({"n": 2}, {"n": 2.0})


def test_bool_is_not_equal_to_one() -> None:
    assert not match({"flag": 1}, {"flag": True})
    assert not match({"flag": True}, {"flag": 1})
    assert not match({"flag": 0.0}, {"flag": False})
    assert match({"flag": True}, {"flag": True})


def test_bool_is_not_equal_to_one_inside_lists_and_objects() -> None:
    assert not match({"v": [1, 0]}, {"v": [True, False]})
    assert not match({"o": {"a": 1}}, {"o": {"a": True}})


def test_string_is_not_equal_to_number() -> None:
    assert not match({"year": "1999"}, SONG)


def test_null_matches_stored_null() -> None:
    assert match({"x": None}, {"x": None})
    assert not match({"x": None}, {"x": 0})


def test_absent_field_equals_nothing_not_even_null() -> None:
    assert not match({"missing": None}, SONG)
    assert not match({"missing": {"$eq": None}}, SONG)


def test_ne_excludes_equal_values() -> None:
    assert not match({"genre": {"$ne": "jazz"}}, SONG)
    assert match({"genre": {"$ne": "pop"}}, SONG)


def test_ne_on_a_stored_list_excludes_lists_containing_the_value() -> None:
    assert not match({"tags": {"$ne": "x"}}, SONG)


def test_ne_matches_absent_field() -> None:
    assert match({"missing": {"$ne": "jazz"}}, SONG)
    assert match({"missing": {"$ne": None}}, SONG)


# Ordering


@pytest.mark.parametrize(
    ("op", "operand", "expected"),
    [
        ("$gt", 1998, True), ("$gt", 1999, False),
        ("$gte", 1999, True), ("$gte", 2000, False),
        ("$lt", 2000, True), ("$lt", 1999, False),
        ("$lte", 1999, True), ("$lte", 1998.5, False),
    ],
)
def test_ordering_compares_numbers(op: str, operand: float, expected: bool) -> None:
    assert match({"year": {op: operand}}, SONG) is expected


def test_ordering_compares_strings_by_code_point() -> None:
    assert match({"genre": {"$gt": "blues"}}, SONG)
    assert match({"genre": {"$lt": "jazzy"}}, SONG)
    assert not match({"genre": {"$gt": "Zydeco"}}, {"genre": "Zydeco"})
    assert match({"genre": {"$gt": "Z"}}, {"genre": "a"})


@pytest.mark.parametrize(
    "metadata",
    [{"v": "10"}, {"v": True}, {"v": None}, {"v": [5, 20]}, {"v": {"n": 20}}, {}],
    ids=["string", "bool", "null", "list", "object", "absent"],
)
def test_ordering_a_number_against_any_other_type_does_not_match(
    metadata: dict[str, object],
) -> None:
    for op in ("$gt", "$gte", "$lt", "$lte"):
        assert not match({"v": {op: 10}}, metadata)


def test_ordering_a_string_against_a_number_does_not_match() -> None:
    assert not match({"year": {"$gt": "1000"}}, SONG)


@pytest.mark.parametrize("operand", [True, None, [1], {"a": 1}])
def test_ordering_needs_a_number_or_string_operand(operand: object) -> None:
    with pytest.raises(FilterError, match=r"\$gt needs a number or a string"):
        compile_filter({"year": {"$gt": operand}})


# Membership and presence


def test_in_matches_any_listed_value() -> None:
    assert match({"genre": {"$in": ["pop", "jazz"]}}, SONG)
    assert not match({"genre": {"$in": ["pop", "rock"]}}, SONG)


def test_in_on_a_stored_list_matches_any_shared_element() -> None:
    assert match({"tags": {"$in": ["q", "y"]}}, SONG)
    assert not match({"tags": {"$in": ["q", "z"]}}, SONG)


def test_in_with_a_list_element_matches_the_whole_stored_list() -> None:
    assert match({"tags": {"$in": [["x", "y"], "q"]}}, SONG)


def test_in_uses_typed_equality() -> None:
    assert match({"year": {"$in": [1999.0]}}, SONG)
    assert not match({"flag": {"$in": [1]}}, {"flag": True})


def test_in_with_an_empty_list_matches_nothing() -> None:
    assert not match({"genre": {"$in": []}}, SONG)


def test_in_does_not_match_absent_field() -> None:
    assert not match({"missing": {"$in": [None]}}, SONG)


def test_nin_excludes_listed_values() -> None:
    assert not match({"genre": {"$nin": ["pop", "jazz"]}}, SONG)
    assert match({"genre": {"$nin": ["pop", "rock"]}}, SONG)


def test_nin_matches_absent_field() -> None:
    assert match({"missing": {"$nin": ["jazz"]}}, SONG)


@pytest.mark.parametrize("op", ["$in", "$nin"])
@pytest.mark.parametrize("operand", ["jazz", {"a": 1}, None, 3])
def test_in_and_nin_need_a_list(op: str, operand: object) -> None:
    with pytest.raises(FilterError, match=rf"\{op} needs a list"):
        compile_filter({"genre": {op: operand}})


def test_exists_true_matches_present_fields_even_null() -> None:
    assert match({"genre": {"$exists": True}}, SONG)
    assert match({"x": {"$exists": True}}, {"x": None})
    assert not match({"missing": {"$exists": True}}, SONG)


def test_exists_false_matches_absent_fields() -> None:
    assert match({"missing": {"$exists": False}}, SONG)
    assert not match({"genre": {"$exists": False}}, SONG)


@pytest.mark.parametrize("operand", [1, 0, "true", None])
def test_exists_needs_a_bool(operand: object) -> None:
    with pytest.raises(FilterError, match=r"\$exists needs true or false"):
        compile_filter({"genre": {"$exists": operand}})


# Logical operators


def test_and_matches_when_all_filters_match() -> None:
    assert match({"$and": [{"genre": "jazz"}, {"year": 1999}]}, SONG)
    assert not match({"$and": [{"genre": "jazz"}, {"year": 2000}]}, SONG)


def test_or_matches_when_any_filter_matches() -> None:
    assert match({"$or": [{"genre": "pop"}, {"year": 1999}]}, SONG)
    assert not match({"$or": [{"genre": "pop"}, {"year": 2000}]}, SONG)


def test_nor_matches_when_no_filter_matches() -> None:
    assert match({"$nor": [{"genre": "pop"}, {"year": 2000}]}, SONG)
    assert not match({"$nor": [{"genre": "pop"}, {"year": 1999}]}, SONG)


def test_logical_operators_nest() -> None:
    spec = {"$or": [{"$and": [{"genre": "pop"}, {"year": 1999}]}, {"loc.city": "Oslo"}]}
    assert match(spec, SONG)


def test_logical_operator_is_anded_with_sibling_fields() -> None:
    assert not match({"genre": "pop", "$or": [{"year": 1999}]}, SONG)


@pytest.mark.parametrize("op", ["$and", "$or", "$nor"])
@pytest.mark.parametrize("operand", [[], {"genre": "jazz"}, "x", [1], [{"genre": "jazz"}, []]])
def test_logical_operators_need_a_non_empty_list_of_objects(op: str, operand: object) -> None:
    with pytest.raises(FilterError, match=rf"\{op} needs"):
        compile_filter({op: operand})


def test_field_not_negates_its_operators() -> None:
    assert match({"year": {"$not": {"$gt": 2000}}}, SONG)
    assert not match({"year": {"$not": {"$gt": 1990, "$lt": 2000}}}, SONG)


def test_field_not_matches_absent_field() -> None:
    assert match({"missing": {"$not": {"$gt": 5}}}, SONG)


@pytest.mark.parametrize("operand", [{}, {"a": 1}, 5, [{"$gt": 5}], None])
def test_field_not_needs_an_operator_object(operand: object) -> None:
    with pytest.raises(FilterError, match=r"\$not needs an operator object"):
        compile_filter({"year": {"$not": operand}})


def test_top_level_not_negates_a_filter() -> None:
    assert not match({"$not": {"genre": "jazz", "year": 1999}}, SONG)
    assert match({"$not": {"genre": "jazz", "year": 2000}}, SONG)


def test_top_level_not_needs_a_filter_object() -> None:
    with pytest.raises(FilterError, match=r"\$not needs filter objects"):
        compile_filter({"$not": [{"genre": "jazz"}]})


# Refused at compile time


@pytest.mark.parametrize("op", ["$foo", "$regex", "$type", "$contains", "$where", "$size"])
def test_unknown_operator_is_rejected_at_compile_time(op: str) -> None:
    with pytest.raises(FilterError, match=rf"^Unsupported metadata operator: \{op}$"):
        compile_filter({"genre": {op: "x"}})
    with pytest.raises(FilterError, match=rf"^Unsupported metadata operator: \{op}$"):
        compile_filter({op: "x"})


def test_unknown_operator_is_rejected_even_inside_an_or_branch() -> None:
    with pytest.raises(FilterError, match=r"\$regex"):
        compile_filter({"$or": [{"genre": "jazz"}, {"genre": {"$regex": "^j"}}]})


def test_field_operator_at_top_level_is_rejected() -> None:
    with pytest.raises(FilterError, match=r"Unsupported metadata operator: \$eq"):
        compile_filter({"$eq": 5})


@pytest.mark.parametrize("op", ["$and", "$or", "$nor"])
def test_logical_operator_on_a_field_is_rejected(op: str) -> None:
    with pytest.raises(FilterError, match="cannot apply to field 'genre'"):
        compile_filter({"genre": {op: [{"$eq": "jazz"}]}})


def test_operator_object_mixing_operators_and_fields_is_rejected() -> None:
    with pytest.raises(FilterError, match="mixes operators and field names"):
        compile_filter({"year": {"$gt": 1, "n": 2}})


@pytest.mark.parametrize("path", ["", ".", "a..b", ".a", "a."])
def test_invalid_field_paths_are_rejected(path: str) -> None:
    with pytest.raises(FilterError, match="Invalid field path"):
        compile_filter({path: 1})


@pytest.mark.parametrize("spec", [[{"genre": "jazz"}], "genre", 3, True])
def test_filter_must_be_an_object(spec: Any) -> None:
    with pytest.raises(FilterError, match="must be a JSON object"):
        compile_filter(spec)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, b"jazz", object(), 1j],
    ids=["tuple", "set", "bytes", "object", "complex"],
)
def test_non_json_values_are_rejected(value: object) -> None:
    with pytest.raises(FilterError, match="Unsupported filter value of type"):
        compile_filter({"genre": {"$eq": value}})


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(FilterError, match="keys must be strings"):
        compile_filter({"loc": {1: "Oslo"}})


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


# Bounds


def _nested_nots(objects: int) -> dict[str, object]:
    """A filter of exactly `objects` nested objects: $not ... $not {"genre": "jazz"}."""
    spec: dict[str, object] = {"genre": "jazz"}
    for _ in range(objects - 1):
        spec = {"$not": spec}
    return spec


def test_nesting_up_to_max_depth_is_accepted() -> None:
    spec = _nested_nots(MAX_DEPTH)
    assert match(spec, SONG) is (MAX_DEPTH % 2 == 1)


def test_nesting_beyond_max_depth_is_rejected() -> None:
    with pytest.raises(FilterError, match=f"nested deeper than {MAX_DEPTH} levels"):
        compile_filter(_nested_nots(MAX_DEPTH + 1))


def test_deeply_nested_operand_values_count_towards_depth() -> None:
    value: object = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(FilterError, match="nested deeper"):
        compile_filter({"v": value})


def test_self_referential_filter_is_rejected() -> None:
    spec: dict[str, object] = {}
    spec["$not"] = spec
    with pytest.raises(FilterError):
        compile_filter(spec)


def test_filter_of_max_nodes_values_is_accepted() -> None:
    # the filter object, the operator object and the list are 3 values
    spec = {"n": {"$in": list(range(MAX_NODES - 3))}}
    assert match(spec, {"n": MAX_NODES - 4})


def test_filter_of_more_than_max_nodes_values_is_rejected() -> None:
    with pytest.raises(FilterError, match=f"more than {MAX_NODES} values"):
        compile_filter({"n": {"$in": list(range(MAX_NODES - 2))}})


def test_many_conditions_are_rejected() -> None:
    spec = {"$or": [{"n": i} for i in range(MAX_NODES)]}
    with pytest.raises(FilterError, match="more than"):
        compile_filter(spec)


# Properties

FIELDS = ["a", "b", "a.b"]
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.0, 1.0, 2.5]) | (
    st.sampled_from(["", "a", "b", "ab"])
)
json_values: st.SearchStrategy[object] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), inner),
    max_leaves=8,
)
metadata = st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
orderable = st.integers(-5, 5) | st.sampled_from([0.5, -1.5, "", "a", "b", "ab"])
comparisons: st.SearchStrategy[dict[str, object]] = (
    st.tuples(st.sampled_from(["$eq", "$ne"]), json_values)
    | st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), orderable)
    | st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(json_values, max_size=3))
    | st.tuples(st.just("$exists"), st.booleans())
).map(lambda pair: {pair[0]: pair[1]})
field_filters = st.builds(lambda f, c: {f: c}, st.sampled_from(FIELDS), comparisons | scalars)
filters: st.SearchStrategy[dict[str, object]] = st.recursive(
    field_filters,
    lambda inner: (
        st.builds(lambda op, fs: {op: fs}, st.sampled_from(["$and", "$or", "$nor"]),
                  st.lists(inner, min_size=1, max_size=3))
        | st.builds(lambda f: {"$not": f}, inner)
        | st.builds(lambda f, g: {**f, **g}, inner, inner)
    ),
    max_leaves=6,
)


@given(st.sampled_from(FIELDS), comparisons, metadata)
def test_field_not_is_the_complement_of_its_operators(
    field: str, ops: dict[str, object], item: dict[str, object]
) -> None:
    assert match({field: {"$not": ops}}, item) is not match({field: ops}, item)


@given(st.sampled_from(FIELDS), st.lists(json_values, max_size=4), metadata)
def test_nin_is_the_negation_of_in(
    field: str, values: list[object], item: dict[str, object]
) -> None:
    assert match({field: {"$nin": values}}, item) is not match({field: {"$in": values}}, item)


@given(st.sampled_from(FIELDS), st.lists(json_values, max_size=4), metadata)
def test_in_is_an_or_of_eq(field: str, values: list[object], item: dict[str, object]) -> None:
    as_or = {"$or": [{field: {"$eq": v}} for v in values]} if values else {"$nor": [{}]}
    assert match({field: {"$in": values}}, item) is match(as_or, item)


@given(st.sampled_from(FIELDS), json_values, metadata)
def test_ne_is_the_negation_of_eq(field: str, value: object, item: dict[str, object]) -> None:
    assert match({field: {"$ne": value}}, item) is not match({field: {"$eq": value}}, item)


@given(filters, metadata)
def test_or_of_a_filter_and_its_nor_matches_everything(
    spec: dict[str, object], item: dict[str, object]
) -> None:
    assert match({"$or": [spec, {"$nor": [spec]}]}, item)


@given(filters, metadata)
def test_and_of_a_filter_with_itself_is_the_filter(
    spec: dict[str, object], item: dict[str, object]
) -> None:
    assert match({"$and": [spec, spec]}, item) is match(spec, item)


@given(filters, metadata)
def test_top_level_not_is_the_complement(
    spec: dict[str, object], item: dict[str, object]
) -> None:
    assert match({"$not": spec}, item) is not match(spec, item)


@given(st.integers(-(2**53), 2**53))
def test_integers_equal_their_float_value(n: int) -> None:
    assert match({"a": n}, {"a": float(n)})
    assert match({"a": float(n)}, {"a": n})


KEYS = st.sampled_from(["$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt",
                        "$lte", "$in", "$nin", "$exists", "$regex", "a", "b", "a.b", ""])
any_json: st.SearchStrategy[object] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    | st.sampled_from(["$eq", "$in", "a.b"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(KEYS | st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(KEYS, any_json, max_size=4) | any_json,
    st.dictionaries(st.sampled_from(["a", "b", "$and"]), any_json, max_size=3),
)
def test_compile_raises_only_filter_error_and_predicates_never_raise(
    spec: Any, item: dict[str, object]
) -> None:
    try:
        predicate = compile_filter(spec)
    except FilterError:
        return
    assert isinstance(predicate(item), bool)
