"""Image metadata: the one check at add, batch add, PATCH and import, and the part a filter matches.

Metadata is a JSON object stored whole: at most ``max_bytes`` of compact UTF-8 JSON, at most 10 levels
of objects and lists, top-level keys of 1 to 63 characters, not starting with ``$`` and not the store's
own ``__imsim__``. Its top-level strings, numbers, booleans and non-empty lists of them are also indexed
for ``filter`` (``filterable_part``); on S3 Vectors that part is "filterable metadata", at most 2 KB and
50 keys per vector, so every store applies the same, slightly lower, limits and a library behaves the
same locally and on AWS. Nested objects are stored and returned, never matched. A broken rule is a 400
(``invalid_metadata``, ``metadata_too_large``) naming the field and the rule.
"""

from __future__ import annotations

import math
from typing import Any

from runtime.errors import BadRequest
from runtime.libraries.values import at, compact_json

MAX_FILTERABLE_KEYS = 40
MAX_FILTERABLE_BYTES = 1536
MAX_METADATA_KEY_CHARS = 63
MAX_METADATA_DEPTH = 10
"""Levels of objects and lists, the metadata object itself being level 1."""
RESERVED_METADATA_KEY = "__imsim__"
"""The S3 Vectors store keeps its own record under this key; user metadata may not use it."""


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


def is_metadata_key(key: Any) -> bool:
    """The rule of a top-level key: what metadata may hold, and so what ``group_by`` and ``order_by`` name."""
    return (
        isinstance(key, str)
        and key != RESERVED_METADATA_KEY
        and not key.startswith("$")
        and 1 <= len(key) <= MAX_METADATA_KEY_CHARS
    )


def check_metadata_key(key: str, field_name: str) -> None:
    if not is_metadata_key(key):
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
