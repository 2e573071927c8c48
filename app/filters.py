"""MongoDB-style metadata filters, compiled once into predicates over decrypted metadata.

This module owns the meaning of a query's `filters` object. It is pure: it
compiles a filter into nested closures, which the search service applies to the
decrypted metadata of its candidates (post-filtering).

Semantics:
- `{}` (and `None`) match everything; `compile_filter` then returns `MATCH_ALL`,
  so a caller can test `predicate is MATCH_ALL` and skip decrypting metadata.
- Several keys in one object are ANDed, at the top level and in operator objects.
- A key is a dot path into nested objects (`"loc.city"`); it does not reach
  into arrays. A path that does not resolve is *absent*.
- A bare value means equality (`{"genre": "jazz"}`). An object whose keys all
  start with `$` is a set of operators (`{"year": {"$gte": 2000, "$lt": 2010}}`);
  an object without `$` keys is a bare value (equality with that object); an
  object mixing both is refused.
- Field operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists`, and `$not`,
  which takes an operator object (`{"x": {"$not": {"$gt": 5}}}`).
  Logical operators: `$and $or $nor` take a non-empty list of filters; a
  top-level `$not` takes one filter.
- Equality is JSON equality with type care: 1 == 1.0, but a bool is never a
  number (True != 1); objects are equal whatever their key order. When the
  stored value is a list and the operand is not, `$eq` matches if any element
  is equal; a list operand must equal the whole list. Absent equals nothing,
  not even null (use `$exists` to test presence).
- `$in` is exactly an `$or` of `$eq` over its elements (which may be any JSON
  values); `$ne` is `not $eq` and `$nin` is `not $in`, so both match an absent field.
- `$gt $gte $lt $lte` compare two numbers or two strings (by code point); any
  other pairing, an absent field or a stored list included, does not match.
- Unknown operators (`$regex`, `$contains`, `$type`, ...), malformed operands,
  filters nested deeper than MAX_DEPTH objects and arrays, and filters of more
  than MAX_NODES JSON values (every object, array and scalar counts, the
  elements of an `$in` list included) raise FilterError at compile time, so a
  bad filter is refused before any data is touched. A compiled predicate never
  raises on JSON metadata.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

Metadata = Mapping[str, object]
Predicate = Callable[[Metadata], bool]
Test = Callable[[object], bool]  # a test of one field's value, or of _ABSENT
_T = TypeVar("_T")

MAX_DEPTH: Final = 32
MAX_NODES: Final = 1_000
_ABSENT: Final = object()
_LOGICAL: Final = ("$and", "$or", "$nor")
_ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


class FilterError(ValueError):
    """The filter is malformed, too large or uses an unsupported operator."""


def _match_all(metadata: Metadata) -> bool:
    """Match any metadata."""
    return True


MATCH_ALL: Final[Predicate] = _match_all


def compile_filter(spec: Mapping[str, object] | None) -> Predicate:
    """Compile a filter object into a predicate over one item's metadata."""
    if spec is None:
        return MATCH_ALL
    _check_shape(spec)
    return _document(spec)


def _check_shape(spec: object) -> None:
    """Refuse non-JSON values, and filters too deep or too large, before compiling."""
    if not isinstance(spec, Mapping):
        raise FilterError("A filter must be a JSON object")
    nodes = 0
    stack: list[tuple[object, int]] = [(spec, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise FilterError(f"Filter has more than {MAX_NODES} values")
        if isinstance(value, Mapping | list):
            if depth > MAX_DEPTH:
                raise FilterError(f"Filter is nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, Mapping):
                if not all(isinstance(key, str) for key in value):
                    raise FilterError("Filter keys must be strings")
                stack.extend((child, depth + 1) for child in value.values())
            else:
                stack.extend((child, depth + 1) for child in value)
        elif not (value is None or isinstance(value, str | bool | int | float)):
            raise FilterError(f"Unsupported filter value of type {type(value).__name__}")


def _all(parts: list[Callable[[_T], bool]]) -> Callable[[_T], bool]:
    if len(parts) == 1:
        return parts[0]
    return lambda x: all(part(x) for part in parts)


def _document(spec: Mapping[str, object]) -> Predicate:
    if not spec:
        return MATCH_ALL
    return _all([_entry(key, value) for key, value in spec.items()])


def _entry(key: str, value: object) -> Predicate:
    if key in _LOGICAL:
        if not isinstance(value, list) or not value:
            raise FilterError(f"{key} needs a non-empty list of filter objects")
        parts = [_subfilter(key, item) for item in value]
        if key == "$and":
            return _all(parts)
        if key == "$or":
            return lambda m: any(part(m) for part in parts)
        return lambda m: not any(part(m) for part in parts)
    if key == "$not":
        inner = _subfilter(key, value)
        return lambda m: not inner(m)
    if key.startswith("$"):
        raise FilterError(f"Unsupported metadata operator: {key}")
    path = tuple(key.split("."))
    if not all(path):
        raise FilterError(f"Invalid field path: {key!r}")
    test = _condition(key, value)
    return lambda m: test(_lookup(m, path))


def _subfilter(op: str, value: object) -> Predicate:
    if not isinstance(value, Mapping):
        raise FilterError(f"{op} needs filter objects")
    return _document(value)


def _lookup(metadata: Metadata, path: tuple[str, ...]) -> object:
    value: object = metadata
    for part in path:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(part, _ABSENT)
    return value


def _condition(field: str, value: object) -> Test:
    if isinstance(value, Mapping) and any(key.startswith("$") for key in value):
        return _operators(field, value)
    return _equality(value)


def _operators(field: str, ops: Mapping[str, object]) -> Test:
    if not all(key.startswith("$") for key in ops):
        raise FilterError(f"Operator object for {field!r} mixes operators and field names")
    return _all([_operator(field, op, operand) for op, operand in ops.items()])


def _operator(field: str, op: str, operand: object) -> Test:
    if op == "$eq":
        return _equality(operand)
    if op == "$ne":
        return _negate(_equality(operand))
    if op in _ORDERINGS:
        return _ordering(op, operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f"{op} needs a list")
        choices = list(operand)

        def member(v: object) -> bool:
            return any(_equal_or_contains(v, choice) for choice in choices)

        return member if op == "$in" else _negate(member)
    if op == "$exists":
        if not isinstance(operand, bool):
            raise FilterError("$exists needs true or false")
        return lambda v: (v is not _ABSENT) == operand
    if op == "$not":
        if not isinstance(operand, Mapping) or not any(k.startswith("$") for k in operand):
            raise FilterError('$not needs an operator object, such as {"$gt": 5}')
        return _negate(_operators(field, operand))
    if op in _LOGICAL:
        raise FilterError(f"{op} combines filters and cannot apply to field {field!r}")
    raise FilterError(f"Unsupported metadata operator: {op}")


def _negate(test: Test) -> Test:
    return lambda v: not test(v)


def _equality(operand: object) -> Test:
    return lambda v: _equal_or_contains(v, operand)


def _ordering(op: str, operand: object) -> Test:
    compare = _ORDERINGS[op]
    if isinstance(operand, str):
        return lambda v: isinstance(v, str) and compare(v, operand)
    if _is_number(operand):
        return lambda v: _is_number(v) and compare(v, operand)
    raise FilterError(f"{op} needs a number or a string")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal_or_contains(stored: object, operand: object) -> bool:
    if isinstance(stored, list) and not isinstance(operand, list):
        return any(_equal(element, operand) for element in stored)
    return _equal(stored, operand)


def _equal(a: object, b: object) -> bool:
    """JSON equality: numbers by value, bools only with bools, objects unordered."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    return a is None and b is None
