"""MongoDB-style metadata filters, compiled once into predicates over decrypted metadata.

Semantics (those of CyborgDB's `filters`):
- `{}` matches everything; several keys in one object are ANDed.
- A key is a dot path into nested objects (`"loc.city"`); a missing path is absent.
- A bare value means equality (`{"genre": "jazz"}`); an object whose keys all
  start with `$` is a set of operators, ANDed.
- `$eq $ne $gt $gte $lt $lte $in $nin $exists` on fields; `$not` on a field's
  operator object; `$and $or $nor` (non-empty lists of filters) and `$not` at
  the top level.
- Equality: numbers compare by value (1 == 1.0) but a bool is never a number;
  when the stored value is a list and the operand is not, equality and `$in`
  match if any element matches.
- Ordering operators compare two numbers or two strings; any other pairing,
  an absent field included, does not match.
- `$ne` and `$nin` match an absent field.
- Unknown operators and malformed operands raise FilterError when compiling,
  so a bad filter is refused before any data is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata], bool]

MAX_DEPTH = 32
MAX_NODES = 1_000
_ABSENT = object()


class FilterError(ValueError):
    """The filter is malformed or uses an unsupported operator."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _equal_or_contains(stored: object, operand: object) -> bool:
    if isinstance(stored, list) and not isinstance(operand, list):
        return any(_equal(element, operand) for element in stored)
    return _equal(stored, operand)


def _ordered(stored: object, operand: object) -> bool:
    return (_is_number(stored) and _is_number(operand)) or (
        isinstance(stored, str) and isinstance(operand, str)
    )


def _lookup(metadata: Metadata, path: tuple[str, ...]) -> object:
    value: object = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


class _Compiler:
    def __init__(self) -> None:
        self.nodes = 0

    def _count(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"Filter has more than {MAX_NODES} conditions")
        if depth > MAX_DEPTH:
            raise FilterError(f"Filter is nested deeper than {MAX_DEPTH} levels")

    def document(self, spec: object, depth: int) -> Predicate:
        self._count(depth)
        if not isinstance(spec, Mapping):
            raise FilterError("A filter must be an object")
        parts = [self.entry(key, value, depth) for key, value in spec.items()]
        if len(parts) == 1:
            return parts[0]
        return lambda m: all(p(m) for p in parts)

    def entry(self, key: object, value: object, depth: int) -> Predicate:
        if not isinstance(key, str):
            raise FilterError("Filter keys must be strings")
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters")
            parts = [self.document(item, depth + 1) for item in value]
            if key == "$and":
                return lambda m: all(p(m) for p in parts)
            if key == "$or":
                return lambda m: any(p(m) for p in parts)
            return lambda m: not any(p(m) for p in parts)
        if key == "$not":
            inner = self.document(value, depth + 1)
            return lambda m: not inner(m)
        if key.startswith("$"):
            raise FilterError(f"Unsupported metadata operator: {key}")
        if not key or any(not part for part in key.split(".")):
            raise FilterError(f"Invalid field path: {key!r}")
        path = tuple(key.split("."))
        test = self.condition(value, depth + 1)
        return lambda m: test(_lookup(m, path))

    def condition(self, value: object, depth: int) -> Callable[[object], bool]:
        """A test of one field's value (or _ABSENT)."""
        self._count(depth)
        if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
            if not all(isinstance(k, str) and k.startswith("$") for k in value):
                raise FilterError("An operator object cannot mix operators and field names")
            tests = [self.operator(op, operand, depth) for op, operand in value.items()]
            if len(tests) == 1:
                return tests[0]
            return lambda v: all(t(v) for t in tests)
        _check_value(value)
        return lambda v: v is not _ABSENT and _equal_or_contains(v, value)

    def operator(self, op: str, operand: object, depth: int) -> Callable[[object], bool]:
        if op in ("$eq", "$ne"):
            _check_value(operand)
            if op == "$eq":
                return lambda v: v is not _ABSENT and _equal_or_contains(v, operand)
            return lambda v: v is _ABSENT or not _equal_or_contains(v, operand)
        if op in ("$gt", "$gte", "$lt", "$lte"):
            if not (_is_number(operand) or isinstance(operand, str)):
                raise FilterError(f"{op} needs a number or a string")
            return _comparison(op, operand)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(f"{op} needs a list")
            for element in operand:
                _check_value(element)
            choices = list(operand)

            def member(v: object) -> bool:
                return v is not _ABSENT and any(_equal_or_contains(v, c) for c in choices)

            if op == "$in":
                return member
            return lambda v: not member(v)
        if op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError("$exists needs true or false")
            return lambda v: (v is not _ABSENT) == operand
        if op == "$not":
            if not isinstance(operand, Mapping) or not operand:
                raise FilterError("$not needs an operator object")
            inner = self.condition(operand, depth + 1)
            return lambda v: not inner(v)
        raise FilterError(f"Unsupported metadata operator: {op}")


def _comparison(op: str, operand: Any) -> Callable[[object], bool]:
    def compare(v: Any) -> bool:
        if v is _ABSENT or not _ordered(v, operand):
            return False
        if op == "$gt":
            return bool(v > operand)
        if op == "$gte":
            return bool(v >= operand)
        if op == "$lt":
            return bool(v < operand)
        return bool(v <= operand)

    return compare


def _check_value(value: object, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(f"Filter value is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list):
        for element in value:
            _check_value(element, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, element in value.items():
            if not isinstance(key, str):
                raise FilterError("Filter keys must be strings")
            _check_value(element, depth + 1)
        return
    raise FilterError(f"Unsupported filter value of type {type(value).__name__}")


def compile_filter(spec: Mapping[str, Any]) -> Predicate:
    """Compile a filter object into a predicate over one item's metadata."""
    return _Compiler().document(spec, 0)
