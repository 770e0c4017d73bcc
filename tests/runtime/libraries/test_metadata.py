"""The metadata check and its filterable part (runtime/libraries/metadata.py)."""

from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.libraries.metadata import MAX_METADATA_DEPTH, check_metadata, filterable_part


def nested(levels: int, container: str = "object") -> dict:
    value: object = 1
    for _ in range(levels - 1):
        value = {"k": value} if container == "object" else [value]
    return {"top": value}


@pytest.mark.parametrize("container", ["object", "list"])
def test_metadata_depth_limit_counts_objects_and_lists(container):
    assert check_metadata(nested(MAX_METADATA_DEPTH, container), 10**6)
    with pytest.raises(BadRequest) as refused:
        check_metadata(nested(MAX_METADATA_DEPTH + 1, container), 10**6)
    assert refused.value.code == "invalid_metadata"
    assert refused.value.message.startswith("metadata: nested more than 10 levels deep")


def test_absurd_depth_is_refused_without_recursion():
    value: object = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(BadRequest) as refused:
        check_metadata({"a": value}, 10**9)
    assert refused.value.code == "invalid_metadata"


def test_metadata_errors_name_the_item():
    with pytest.raises(BadRequest) as refused:
        check_metadata({"$gt": 1}, 4096, "images[4]")
    assert refused.value.message.startswith("images[4].metadata: key '$gt'")


def test_filterable_part_keeps_scalars_and_lists_of_them():
    metadata = {"a": 1, "b": "x", "c": [1, "y", True], "d": [], "e": [{"f": 1}], "g": {"h": 1}, "i": None}
    assert filterable_part(metadata) == {"a": 1, "b": "x", "c": [1, "y", True]}
