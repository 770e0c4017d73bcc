"""``group_by``: the rule of a grouped search, checked once for every store.

A grouped search answers the best ``per_group`` matches of each value of one top-level metadata key, up
to ``top_k`` groups, best group first (a group ranks by its best match). The algorithm is
``LibraryStore``'s (``store.py``: one query of the store's candidate bound, then ``group_matches``);
this module holds what a grouping is and how its key and values are read.

- The key is a top-level metadata key (the rules of ``metadata.check_metadata_key``).
- A value is a string, a number or a boolean, as JSON has them: ``1`` and ``1.0`` are one value,
  ``true`` is not ``1``, ``"1"`` is not ``1``.
- An image whose key is missing, ``null``, a list or an object belongs to no group: it is left out of a
  grouped answer (search without ``group_by`` to see it). A list would put one image in several groups,
  and "one per album" means one image answers once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import BadRequest
from runtime.libraries.metadata import MAX_METADATA_KEY_CHARS, is_metadata_key, is_number

MAX_PER_GROUP = 10
"""Matches a group answers at most (``per_group``): with ``top_k`` groups, a search answers at most
``top_k * MAX_PER_GROUP`` matches."""

GroupValue = str | int | float | bool


@dataclass(frozen=True)
class Grouping:
    key: str
    per_group: int


def check_grouping(group_by: Any, per_group: Any) -> Grouping | None:
    """The grouping of a search (None without ``group_by``), or a 400 ``invalid_value`` naming the field."""
    if group_by is None:
        if per_group is not None:
            raise BadRequest("per_group: only with group_by (the metadata key to group by)", code="invalid_value")
        return None
    if not is_metadata_key(group_by):
        raise BadRequest(
            f"group_by: {group_by!r} is not a metadata key; give a top-level key of 1 to {MAX_METADATA_KEY_CHARS} "
            "characters, not starting with '$'",
            code="invalid_value",
        )
    count = 1 if per_group is None else per_group
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PER_GROUP:
        raise BadRequest(f"per_group: must be between 1 and {MAX_PER_GROUP}", code="invalid_value")
    return Grouping(group_by, count)


def group_of(metadata: dict[str, Any], key: str) -> tuple[str, GroupValue] | None:
    """The value's identity as JSON compares it (a kind and the value), or None: no group."""
    value = metadata.get(key)
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)) and is_number(value):  # finite; 1 == 1.0 as in JSON, ints stay exact
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None
