"""The local filter evaluator: a checked filter compiled to a predicate over an image's filterable metadata.

The embedded store runs it on every candidate of a filtered search; the AWS store's searches never do
(S3 Vectors evaluates filters itself), so it follows what S3 Vectors documents and, where S3 Vectors says
nothing, MongoDB's reading of the same operators. Count and delete by filter run it on both stores
(``store.matching``, over every image's metadata), so they answer the same on both. Filters reach it
checked (``filters.check_filter``):

- ``{"key": value}`` is ``{"key": {"$eq": value}}``; several keys in one object must all hold.
- ``$eq`` / ``$ne``: a string, number or boolean. Against a stored list, ``$eq`` holds when any element is equal.
- ``$gt $gte $lt $lte``: a number; they hold only for stored numbers (or a list with such a number).
- ``$in`` / ``$nin``: a non-empty list of strings, numbers or booleans.
- ``$exists``: a boolean. ``$and`` / ``$or``: a non-empty list of filters.
- ``$startsWith``: a non-empty string; holds for a stored string (or a list with one) that begins with
  it, case-sensitive. S3 Vectors answers it on ENHANCED indexes, which the AWS store makes every index.
- Types never mix: ``true`` is not ``1``, ``"1"`` is not ``1``; ``1`` and ``1.0`` are equal.
- Where S3 Vectors does not say, this evaluator follows MongoDB's reading of the same operators:
  ``$ne`` and ``$nin`` hold when the key is missing, and are the exact negation of ``$eq`` / ``$in``.
- Only the filterable part of metadata is matched: top-level strings, numbers, booleans and lists of them.
  Nested objects are stored and returned, never matched (on AWS they are non-filterable metadata).

Cost: predicates read an image's filterable metadata as ``readable`` makes it, once, when the image is
written: each stored list is summarised (its values as a set, its smallest and largest number, its
strings sorted), so every operator is one lookup or comparison whatever the list's length (a
``$startsWith`` a binary search). A filter's cost per image is then linear in its constraints.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.libraries.filters import Filter
from runtime.libraries.metadata import filterable_part, is_number, is_scalar

Scalar = str | int | float | bool
Predicate = Callable[[dict[str, Any]], bool]
MISSING = object()


@dataclass(frozen=True)
class StoredList:
    """A stored list as predicates read it: one lookup per test, not a walk of the list."""

    keys: frozenset[tuple[str, Scalar]]
    """``value_key`` of every element."""
    low: int | float | None
    """The smallest number in the list (None: no number)."""
    high: int | float | None
    strings: tuple[str, ...]
    """The strings of the list, sorted (for ``$startsWith``)."""

    @classmethod
    def of(cls, values: list[Scalar]) -> StoredList:
        numbers = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
        strings = sorted(value for value in values if isinstance(value, str))
        low, high = (min(numbers), max(numbers)) if numbers else (None, None)
        return cls(frozenset(value_key(value) for value in values), low, high, tuple(strings))

    def has_prefix(self, prefix: str) -> bool:
        at = bisect_left(self.strings, prefix)
        return at < len(self.strings) and self.strings[at].startswith(prefix)


def readable(filterable: dict[str, Any]) -> dict[str, Any]:
    """An image's filterable metadata (``metadata.filterable_part``) as predicates read it."""
    return {key: StoredList.of(value) if isinstance(value, list) else value for key, value in filterable.items()}


def compile_filter(conditions: Filter) -> Predicate:
    """A predicate over an image's ``readable`` metadata for a checked filter (see the module's semantics)."""
    clauses = [_compile_entry(key, value) for key, value in conditions.items()]
    if len(clauses) == 1:
        return clauses[0]
    return lambda metadata: all(clause(metadata) for clause in clauses)


def matches_filter(metadata: dict[str, Any], conditions: Filter) -> bool:
    return compile_filter(conditions)(readable(filterable_part(metadata)))


def _compile_entry(key: str, value: Any) -> Predicate:
    if key == "$and":
        parts = [compile_filter(inner) for inner in value]
        return lambda metadata: all(part(metadata) for part in parts)
    if key == "$or":
        parts = [compile_filter(inner) for inner in value]
        return lambda metadata: any(part(metadata) for part in parts)
    operators = value if isinstance(value, dict) else {"$eq": value}
    tests = [_value_test(operator, operand) for operator, operand in operators.items()]
    return lambda metadata: all(test(metadata.get(key, MISSING)) for test in tests)


def _value_test(operator: str, operand: Any) -> Callable[[Any], bool]:
    """The test of one operator on a stored value: a scalar, a ``StoredList`` (when any element holds), or MISSING."""
    if operator == "$exists":
        return lambda stored: (stored is not MISSING) == operand
    if operator in ("$eq", "$ne"):
        key = value_key(operand)

        def equal(stored: Any) -> bool:
            return _holds(stored, lambda item: same_value(item, operand), lambda values: key in values.keys)

        return equal if operator == "$eq" else (lambda stored: not equal(stored))
    if operator == "$startsWith":
        return lambda stored: _holds(
            stored,
            lambda item: isinstance(item, str) and item.startswith(operand),
            lambda values: values.has_prefix(operand),
        )
    if operator in ("$in", "$nin"):
        wanted = {value_key(choice) for choice in operand}

        def within(stored: Any) -> bool:
            return _holds(
                stored,
                lambda item: is_scalar(item) and value_key(item) in wanted,
                lambda values: not values.keys.isdisjoint(wanted),
            )

        return within if operator == "$in" else (lambda stored: not within(stored))
    compare: Callable[[Any], bool] = {
        "$gt": lambda item: item > operand,
        "$gte": lambda item: item >= operand,
        "$lt": lambda item: item < operand,
        "$lte": lambda item: item <= operand,
    }[operator]
    # Some number of a list passes a lower bound when its largest does, an upper bound when its smallest does.
    extreme = "high" if operator in ("$gt", "$gte") else "low"

    def compares(values: StoredList) -> bool:
        number = getattr(values, extreme)
        return number is not None and compare(number)

    return lambda stored: _holds(stored, lambda item: is_number(item) and compare(item), compares)


def _holds(stored: Any, scalar_test: Callable[[Any], bool], list_test: Callable[[StoredList], bool]) -> bool:
    """A stored list holds when any element does; a missing key never does."""
    if stored is MISSING:
        return False
    return list_test(stored) if isinstance(stored, StoredList) else scalar_test(stored)


def value_key(value: Scalar) -> tuple[str, Scalar]:
    """Equal keys exactly when ``same_value`` holds: ``true`` is not ``1`` (Python says it is), ``1`` is ``1.0``."""
    kind = "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"
    return kind, value


def same_value(stored: Any, wanted: Scalar) -> bool:
    """JSON equality: ``true`` is not ``1``, ``"1"`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored is wanted
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return is_number(stored) and stored == wanted
