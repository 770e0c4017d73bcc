"""Filter validation (runtime/libraries/filters.py)."""

from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.libraries.filters import check_filter


def test_filter_depth_and_size_are_bounded():
    conditions: dict = {"a": 1}
    for _ in range(9):
        conditions = {"$and": [conditions]}
    with pytest.raises(BadRequest) as refused:
        check_filter(conditions)
    assert "nested more than 8 levels" in refused.value.message
    with pytest.raises(BadRequest) as refused:
        check_filter({f"k{i}": i for i in range(65)})
    assert "at most 64 conditions" in refused.value.message
    assert check_filter(None) == {}
