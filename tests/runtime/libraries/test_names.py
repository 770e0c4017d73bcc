"""Library names and image ids (runtime/libraries/names.py); the store suite runs them through both stores."""

from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.libraries.names import check_image_id, check_library_name


def test_names_and_ids_are_nfc_and_need_a_visible_character():
    assert check_library_name("cafe\u0301") == "caf\u00e9"
    assert check_image_id("cafe\u0301") == "caf\u00e9"
    for invisible in ("\u3164", "\u115f", "\u1160\uffa0"):
        with pytest.raises(BadRequest):
            check_library_name(invisible)
        with pytest.raises(BadRequest):
            check_image_id(invisible)
