"""Perceptual hashes: a picture's identity for the ``copy`` tier of duplicate screening.

``perceptual_hash`` is imagehash's pHash of the decoded picture (the full frame, upright: what
``runtime.inputs.images`` decodes before the model's crop, so the tier does not depend on the model):
64 bits as 16 lowercase hex digits. A re-encoded, resized or lightly recoloured copy keeps nearly the
same bits; ``hash_distance`` counts the bits that differ, and at most ``COPY_DISTANCE`` is a copy.
"""

from __future__ import annotations

import imagehash
from PIL import Image

HASH_SIZE = 8
"""8 x 8 DCT coefficients: 64 bits."""
HASH_CHARS = HASH_SIZE * HASH_SIZE // 4
COPY_DISTANCE = 8
"""At most this many of the 64 bits differ between a picture and a copy of it (a first value: the
duplicates bench chooses it)."""


def perceptual_hash(image: Image.Image) -> str:
    """The picture's pHash in lowercase hex (``HASH_CHARS`` digits)."""
    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def hash_distance(a: str, b: str) -> int:
    """How many bits of two hashes differ (Hamming distance)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
