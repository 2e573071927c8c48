"""Metadata terms: the (field path, scalar value) pairs the encrypted metadata index
holds, and the terms a filter can be answered from.

This module owns how metadata maps to index terms; it is pure. An item's
terms are its scalar leaves, as dot paths into nested objects (arrays are not
entered, as app.filters does not enter them), each element of a list of
scalars counting as a value of the list's path, because `{"tags": "a"}`
matches `tags: ["a", "b"]`. Numbers are canonical: 1 and 1.0 are one term,
`true` and 1 are two, as app.filters compares them.

A filter's terms form `Clauses`: a conjunction of clauses, each a disjunction
of terms. The items holding some term of every clause are a superset of the
filter's matches, never missing one, so a caller reads candidates from the
index and still applies the whole filter to their decrypted metadata. Only
equality can be answered: a bare value, `$eq`, `$in` and their `$and`/`$or`;
a filter with no such part gives no clauses (None), and the caller scans.

An item with more than MAX_TERMS_PER_ITEM terms is not indexed term by term:
it gets the OVERFLOW term, which every indexed lookup also reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

Term = tuple[str, bytes]  # (dot path, canonical value)
Clauses = list[frozenset[Term]]
IsIndexed = Callable[[str], bool]  # whether a field path is in the index

MAX_TERMS_PER_ITEM: Final = 256
OVERFLOW: Final[Term] = ("", b"overflow")


def canonical_value(value: object) -> bytes | None:
    """The value's bytes in a term: type-tagged, numbers equal as app.filters compares
    them; None for what is not a scalar (objects, lists)."""
    if value is None:
        return b"z"
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, int):
        return b"n" + str(value).encode()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return b"n" + str(int(value)).encode()
        return b"n" + repr(value).encode()
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    return None


def item_terms(metadata: Mapping[str, object] | None, indexed: IsIndexed) -> set[Term]:
    """The terms an item's metadata puts in the index (OVERFLOW alone past the bound)."""
    terms: set[Term] = set()
    if metadata:
        _collect(metadata, "", indexed, terms)
    return {OVERFLOW} if len(terms) > MAX_TERMS_PER_ITEM else terms


def _collect(value: Mapping[str, object], prefix: str, indexed: IsIndexed,
             terms: set[Term]) -> None:
    for key, child in value.items():
        path = f"{prefix}{key}"
        if not indexed(path):
            continue
        if isinstance(child, Mapping):
            _collect(child, f"{path}.", indexed, terms)
            continue
        for element in child if isinstance(child, list) else (child,):
            encoded = canonical_value(element)
            if encoded is not None:
                terms.add((path, encoded))
        if len(terms) > MAX_TERMS_PER_ITEM:
            return


def filter_clauses(filters: Mapping[str, object] | None, indexed: IsIndexed) -> Clauses | None:
    """Clauses whose candidates include every match of `filters` (already compiled,
    so well formed), or None when no part of it can be answered from the index."""
    if not filters:
        return None
    return _document(filters, indexed)


def _document(doc: Mapping[str, object], indexed: IsIndexed) -> Clauses | None:
    clauses: Clauses = []
    for key, value in doc.items():
        part = _part(key, value, indexed)
        if part is not None:
            clauses.extend(part)
    return clauses or None


def _part(key: str, value: object, indexed: IsIndexed) -> Clauses | None:
    if key == "$and" and isinstance(value, list):
        clauses: Clauses = []
        for child in value:
            part = _document(child, indexed) if isinstance(child, Mapping) else None
            if part is not None:
                clauses.extend(part)
        return clauses or None
    if key == "$or" and isinstance(value, list):
        # Each branch's matches lie within any one of its clauses: the union of
        # one clause per branch holds every match (the smallest is the sharpest).
        union: set[Term] = set()
        for child in value:
            part = _document(child, indexed) if isinstance(child, Mapping) else None
            if part is None:
                return None
            union |= min(part, key=len)
        return [frozenset(union)]
    if key.startswith("$") or not indexed(key):
        return None
    values = _equal_values(value)
    if values is None:
        return None
    encoded = {canonical_value(v) for v in values}
    if None in encoded:
        return None
    return [frozenset((key, e) for e in encoded if e is not None)]


def _equal_values(condition: object) -> list[object] | None:
    """The values a field must equal one of, or None if the condition is no equality."""
    if isinstance(condition, Mapping) and any(str(k).startswith("$") for k in condition):
        found: list[object] | None = None
        for op, operand in condition.items():
            if op == "$eq":
                values: list[object] = [operand]
            elif op == "$in" and isinstance(operand, list) and operand:
                values = list(operand)
            else:
                continue  # other operators narrow further; the equality still bounds
            if found is None or len(values) < len(found):
                found = values  # each equality bounds the matches: keep the narrowest
        return found
    if isinstance(condition, Mapping | list):
        return None  # whole-object or whole-list equality: not a scalar term
    return [condition]
