"""Content hashes: an image file's identity for exact-duplicate screening.

``content_hash`` is the SHA-256 of the file's bytes in lowercase hex, computed before any decoding or
model work, so a second copy of a file is found by one lookup; ``check_content_hash`` refuses anything
else where a store is handed a hash (a programming error, so a ``ValueError``, not a 400).
"""

from __future__ import annotations

import hashlib

from runtime.libraries.values import at


def content_hash(data: bytes) -> str:
    """The image file's identity for exact-duplicate screening: SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def is_content_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_content_hash(value: str | None, where: str = "") -> str | None:
    if value is not None and not is_content_hash(value):
        raise ValueError(f"{at(where, 'content_hash')}: not a SHA-256 hex digest (use hashing.content_hash)")
    return value
