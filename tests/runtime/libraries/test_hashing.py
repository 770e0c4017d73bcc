"""Content hashes (runtime/libraries/hashing.py)."""

from __future__ import annotations

from runtime.libraries.hashing import content_hash


def test_content_hash_is_sha256_hex():
    assert content_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
