"""Library names and image ids: what they may hold, their one (NFC) spelling, and new ids.

A library name is 1 to 64 letters of any script, decimal digits or ``_``; an image id is 1 to 128 of
those or ``_ - . : @``, not only dots. Both are NFC-normalised, so two spellings of one name are one
library (or image), and both need a visible character (Hangul fillers are letters that draw nothing).
A bad one is a 400 (``invalid_library_name``, ``invalid_image_id``) naming the field; an image added
without an id gets ``new_image_id()``.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from runtime.errors import BadRequest
from runtime.libraries.values import at

MAX_NAME_CHARS = 64
MAX_ID_CHARS = 128
NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})
"""Letters of any script and decimal digits (of any script). Marks, symbols, punctuation are out."""
NAME_EXTRA_CHARS = frozenset("_")
ID_EXTRA_CHARS = frozenset("_-.:@")
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: Unicode calls them letters (Lo), yet they draw nothing. A name needs a visible character."""


def check_library_name(name: Any) -> str:
    """The name in NFC form (so two spellings of one name are one library), or a 400."""
    normal = nfc(name)
    if not is_library_name(normal):
        raise BadRequest(
            f"name: {name!r} is not a library name; use 1 to {MAX_NAME_CHARS} letters (any script), "
            "digits or underscores, at least one of them visible",
            code="invalid_library_name",
        )
    return normal


def is_library_name(name: str) -> bool:
    """1 to 64 letters (any script), decimal digits or ``_``, once NFC-normalised; not only fillers."""
    return is_spelled_with(name, MAX_NAME_CHARS, NAME_EXTRA_CHARS)


def check_image_id(image_id: Any, where: str = "") -> str:
    """The id in NFC form (like names: two spellings of one id are one image), or a 400."""
    normal = nfc(image_id)
    if not (is_spelled_with(normal, MAX_ID_CHARS, ID_EXTRA_CHARS) and normal.strip(".") != ""):
        raise BadRequest(
            f"{at(where, 'id')}: {image_id!r} is not an image id; use 1 to {MAX_ID_CHARS} letters, digits "
            "or _ - . : @ (not only dots, at least one visible character)",
            code="invalid_image_id",
        )
    return normal


def nfc(value: Any) -> str:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else ""


def is_spelled_with(text: str, max_chars: int, extra: frozenset[str]) -> bool:
    """1 to ``max_chars`` letters, decimal digits or ``extra`` characters, at least one of them visible."""
    return (
        1 <= len(text) <= max_chars
        and all(char in extra or unicodedata.category(char) in NAME_CATEGORIES for char in text)
        and has_visible_character(text)
    )


def has_visible_character(text: str) -> bool:
    return any(char not in INVISIBLE_LETTERS for char in text)


def new_image_id() -> str:
    return uuid.uuid4().hex
