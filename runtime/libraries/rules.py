"""The rules of libraries, one function each: names, ids, metadata, filters, content hashes, vectors.

Every store, the API and bulk import call these, so a rule is written once and says the same words
everywhere. Errors name the field (``images[2].metadata``, ``filter.$and[1].price.$gt``) and the rule.

Filters are the S3 Vectors filter language, evaluated here for the embedded store and sent as they are
to S3 Vectors on AWS. What S3 Vectors documents, and what this evaluator does:

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

import hashlib
import json
import math
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.errors import BadRequest

MAX_NAME_CHARS = 64
MAX_ID_CHARS = 128
NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})
"""Letters of any script and decimal digits (of any script). Marks, symbols, punctuation are out."""
ID_EXTRA_CHARS = frozenset("_-.:@")
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: Unicode calls them letters (Lo), yet they draw nothing. A name needs a visible character."""

# Metadata is stored whole, and its top-level strings, numbers, booleans and lists of them are also
# indexed for ``filter``. On S3 Vectors the indexed part is "filterable metadata": at most 2 KB and 50 keys
# per vector. Every store applies the same, slightly lower, limits so a library behaves the same
# locally and on AWS.
MAX_FILTERABLE_KEYS = 40
MAX_FILTERABLE_BYTES = 1536
MAX_METADATA_KEY_CHARS = 63
MAX_METADATA_DEPTH = 10
"""Levels of objects and lists, the metadata object itself being level 1."""
RESERVED_METADATA_KEY = "__imsim__"
"""The S3 Vectors store keeps its own record under this key; user metadata may not use it."""

MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 64
MAX_FILTER_LIST = 100
COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", "$startsWith", *COMPARISONS})
LOGICAL_OPERATORS = frozenset({"$and", "$or"})

Scalar = str | int | float | bool
Filter = dict[str, Any]
Predicate = Callable[[dict[str, Any]], bool]
MISSING = object()


# --- names and ids ---------------------------------------------------------------------


def check_library_name(name: Any) -> str:
    """The name in NFC form (so two spellings of one name are one library), or a 400."""
    normal = unicodedata.normalize("NFC", name) if isinstance(name, str) else ""
    if not is_library_name(normal):
        raise BadRequest(
            f"name: {name!r} is not a library name; use 1 to {MAX_NAME_CHARS} letters (any script), "
            "digits or underscores, at least one of them visible",
            code="invalid_library_name",
        )
    return normal


def is_library_name(name: str) -> bool:
    """1 to 64 letters (any script), decimal digits or ``_``, once NFC-normalised; not only fillers."""
    return (
        1 <= len(name) <= MAX_NAME_CHARS
        and all(char == "_" or unicodedata.category(char) in NAME_CATEGORIES for char in name)
        and has_visible_character(name)
    )


def check_image_id(image_id: Any, where: str = "") -> str:
    """The id in NFC form (like names: two spellings of one id are one image), or a 400."""
    normal = unicodedata.normalize("NFC", image_id) if isinstance(image_id, str) else ""
    valid = (
        1 <= len(normal) <= MAX_ID_CHARS
        and normal.strip(".") != ""
        and all(char in ID_EXTRA_CHARS or unicodedata.category(char) in NAME_CATEGORIES for char in normal)
        and has_visible_character(normal)
    )
    if not valid:
        raise BadRequest(
            f"{at(where, 'id')}: {image_id!r} is not an image id; use 1 to {MAX_ID_CHARS} letters, digits "
            "or _ - . : @ (not only dots, at least one visible character)",
            code="invalid_image_id",
        )
    return normal


def has_visible_character(text: str) -> bool:
    return any(char not in INVISIBLE_LETTERS for char in text)


def new_image_id() -> str:
    return uuid.uuid4().hex


# --- metadata --------------------------------------------------------------------------


def check_metadata(metadata: Any, max_bytes: int, where: str = "") -> dict[str, Any]:
    """A JSON object within the depth, size and key rules, or a 400 naming the rule.

    Add, PATCH and import call this one function: whatever it accepts is stored, returned and
    searchable for as long as the image lives."""
    field_name = at(where, "metadata")
    if not isinstance(metadata, dict):
        raise BadRequest(f"{field_name}: must be a JSON object", code="invalid_metadata")
    check_depth(metadata, field_name)
    try:
        size = len(compact_json(metadata).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{field_name}: not valid JSON ({exc})", code="invalid_metadata") from exc
    if size > max_bytes:
        raise BadRequest(f"{field_name}: {size} bytes of JSON; at most {max_bytes}", code="metadata_too_large")
    for key in metadata:
        check_metadata_key(key, field_name)
    indexed = filterable_part(metadata)
    indexed_size = len(compact_json(indexed).encode("utf-8"))
    if len(indexed) > MAX_FILTERABLE_KEYS or indexed_size > MAX_FILTERABLE_BYTES:
        raise BadRequest(
            f"{field_name}: its top-level strings, numbers, booleans and lists of them (the values filter "
            f"matches) take {len(indexed)} keys and {indexed_size} bytes; at most {MAX_FILTERABLE_KEYS} keys and "
            f"{MAX_FILTERABLE_BYTES} bytes. Put long or many values inside a nested object: stored, not filterable",
            code="metadata_too_large",
        )
    return metadata


def check_depth(metadata: dict[str, Any], field_name: str) -> None:
    """At most MAX_METADATA_DEPTH levels of objects and lists (walked without recursion: any input is safe)."""
    pending: list[tuple[Any, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise BadRequest(
                f"{field_name}: nested more than {MAX_METADATA_DEPTH} levels deep (objects and lists, the "
                "metadata object being level 1)",
                code="invalid_metadata",
            )
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_metadata_key(key: str, field_name: str) -> None:
    if (
        not isinstance(key, str)
        or key == RESERVED_METADATA_KEY
        or key.startswith("$")
        or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS
    ):
        raise BadRequest(
            f"{field_name}: key {key!r}: top-level keys take 1 to {MAX_METADATA_KEY_CHARS} characters, "
            f"may not start with '$' (filter operators do) and may not be {RESERVED_METADATA_KEY!r}",
            code="invalid_metadata",
        )


def filterable_part(metadata: dict[str, Any]) -> dict[str, Any]:
    """The top-level values a filter matches: strings, numbers, booleans, and non-empty lists of them."""
    return {key: value for key, value in metadata.items() if is_filterable(value)}


def is_filterable(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(is_scalar(item) for item in value)
    return is_scalar(value)


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def is_number(value: Any) -> bool:
    return is_scalar(value) and isinstance(value, (int, float)) and not isinstance(value, bool)


# --- filters ---------------------------------------------------------------------------


def check_filter(conditions: Any, field: str = "filter") -> Filter:
    """The filter as given (``{}`` for none) once every operator, value and path is valid, or a 400
    ``invalid_filter`` naming the operator and its path."""
    if conditions is None:
        return {}
    counter = [0]
    _check_clause(conditions, field, 1, counter)
    return conditions


def _check_clause(clause: Any, path: str, depth: int, counter: list[int]) -> None:
    if not isinstance(clause, dict):
        raise invalid_filter(path, "must be a JSON object of metadata key: condition")
    if depth > MAX_FILTER_DEPTH:
        raise invalid_filter(path, f"nested more than {MAX_FILTER_DEPTH} levels of $and / $or")
    for key, value in clause.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            raise invalid_filter(where, "keys are strings")
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list) or not value:
                raise invalid_filter(where, "takes a non-empty list of filters")
            for position, inner in enumerate(value):
                _check_clause(inner, f"{where}[{position}]", depth + 1, counter)
        elif key.startswith("$"):
            raise invalid_filter(where, f"unknown operator; use {', '.join(sorted(LOGICAL_OPERATORS))} here")
        else:
            if key == RESERVED_METADATA_KEY or not key:
                raise invalid_filter(where, "not a metadata key a filter can match")
            _check_condition(value, where, counter)


def _check_condition(condition: Any, path: str, counter: list[int]) -> None:
    operators = condition if isinstance(condition, dict) else {"$eq": condition}
    if not operators:
        raise invalid_filter(path, "an empty condition; give a value or an operator")
    for operator, operand in operators.items():
        where = f"{path}.{operator}" if isinstance(condition, dict) else path
        counter[0] += 1
        if counter[0] > MAX_FILTER_CONDITIONS:
            raise invalid_filter(where, f"a filter takes at most {MAX_FILTER_CONDITIONS} conditions")
        if operator not in FIELD_OPERATORS:
            if operator.startswith("$"):
                raise invalid_filter(where, f"unknown operator; use one of {', '.join(sorted(FIELD_OPERATORS))}")
            raise invalid_filter(where, "nested values are not filterable; filter on top-level metadata keys")
        _check_operand(operator, operand, where)


def _check_operand(operator: str, operand: Any, where: str) -> None:
    if operator in ("$eq", "$ne") and not is_scalar(operand):
        raise invalid_filter(where, "takes a string, number or boolean")
    if operator in COMPARISONS and not is_number(operand):
        raise invalid_filter(where, "takes a number")
    if operator == "$exists" and not isinstance(operand, bool):
        raise invalid_filter(where, "takes true or false")
    if operator == "$startsWith" and (not isinstance(operand, str) or not operand):
        raise invalid_filter(where, "takes a non-empty string")
    if operator in ("$in", "$nin") and (
        not isinstance(operand, list)
        or not 1 <= len(operand) <= MAX_FILTER_LIST
        or not all(is_scalar(item) for item in operand)
    ):
        raise invalid_filter(where, f"takes a list of 1 to {MAX_FILTER_LIST} strings, numbers or booleans")


def invalid_filter(path: str, reason: str) -> BadRequest:
    return BadRequest(f"{path}: {reason}", code="invalid_filter")


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
    compare = {
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


# --- content, scores, vectors ----------------------------------------------------------


def content_hash(data: bytes) -> str:
    """The image file's identity for exact-duplicate screening: SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def check_content_hash(value: str | None, where: str = "") -> str | None:
    if value is not None and (
        not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value)
    ):
        raise ValueError(f"{at(where, 'content_hash')}: not a SHA-256 hex digest (use rules.content_hash)")
    return value


def check_score(value: float | None, field: str) -> float | None:
    """A score bound (``threshold``, ``min_score``): between 0 and 1 (NaN is not)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadRequest(f"{field}: must be between 0 and 1", code="invalid_value")
    return value


def check_vector(vector: np.ndarray, dimension: int) -> np.ndarray:
    """The vector as float32 of unit length, so a dot product is the cosine.

    Embeddings arrive normalised; a wrong dimension or a zero vector is a bug, not bad input.
    """
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dimension:
        raise ValueError(f"vector has {vector.shape[0]} dimensions; the store holds {dimension}")
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and not zero")
    return vector / np.float32(norm)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
