"""The local filter evaluator: a checked filter compiled to a predicate over an image's filterable metadata.

The embedded store runs it on every candidate of a filtered search; the AWS store never does (S3 Vectors
evaluates filters itself), so it follows what S3 Vectors documents and, where S3 Vectors says nothing,
MongoDB's reading of the same operators. Filters reach it checked (``filters.check_filter``):

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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.libraries.filters import Filter
from runtime.libraries.metadata import filterable_part, is_number

Scalar = str | int | float | bool
Predicate = Callable[[dict[str, Any]], bool]
MISSING = object()


def compile_filter(conditions: Filter) -> Predicate:
    """A predicate over an image's filterable metadata for a checked filter (see the module's semantics)."""
    clauses = [_compile_entry(key, value) for key, value in conditions.items()]
    if len(clauses) == 1:
        return clauses[0]
    return lambda metadata: all(clause(metadata) for clause in clauses)


def matches_filter(metadata: dict[str, Any], conditions: Filter) -> bool:
    return compile_filter(conditions)(filterable_part(metadata))


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
    if operator == "$exists":
        return lambda stored: (stored is not MISSING) == operand
    if operator == "$eq":
        return lambda stored: _any_element(stored, lambda item: same_value(item, operand))
    if operator == "$ne":
        return lambda stored: not _any_element(stored, lambda item: same_value(item, operand))
    if operator == "$startsWith":
        return lambda stored: _any_element(stored, lambda item: isinstance(item, str) and item.startswith(operand))
    if operator in ("$in", "$nin"):
        wanted = list(operand)

        def within(stored: Any) -> bool:
            return _any_element(stored, lambda item: any(same_value(item, choice) for choice in wanted))

        return within if operator == "$in" else (lambda stored: not within(stored))
    compare: Callable[[Any], bool] = {
        "$gt": lambda item: item > operand,
        "$gte": lambda item: item >= operand,
        "$lt": lambda item: item < operand,
        "$lte": lambda item: item <= operand,
    }[operator]
    return lambda stored: _any_element(stored, lambda item: is_number(item) and compare(item))


def _any_element(stored: Any, test: Callable[[Any], bool]) -> bool:
    """A stored list holds when any element does; a missing key never does."""
    if stored is MISSING:
        return False
    if isinstance(stored, list):
        return any(test(item) for item in stored)
    return test(stored)


def same_value(stored: Any, wanted: Scalar) -> bool:
    """JSON equality: ``true`` is not ``1``, ``"1"`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored is wanted
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return is_number(stored) and stored == wanted
