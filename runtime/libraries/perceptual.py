"""The copy tier's perceptual hash: the same picture re-encoded, resized or recoloured hashes alike.

A 256-bit DCT hash (``imagehash.phash``, hash size 16) of the whole frame in grey, after a uniform
margin is trimmed off (a screenshot of a picture in a viewer's frame hashes as the picture). It is
computed on the image as the server decodes it (drafted to the model's input size, EXIF upright),
independent of the model's crop. Two hashes at most ``COPY_DISTANCE`` bits apart are copies.

bench/bench_duplicates.py measures the choices (hash size, the trim, the threshold) on near-copies
of real photographs; docs/libraries.md ("Duplicates in tiers: the copy tier, measured") has its table.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIZE = 16
"""The DCT's side: 16 x 16 = 256 bits (64 hex digits). At 8 (64 bits) distinct photos of the bench's set came
as close as 4 bits, and at 4 bits 154 distinct pairs matched while 42% of the copies were still farther."""
COPY_DISTANCE = 48
"""At most this many of the 256 bits differ between a copy and its original. The bench's choice: the
closest distinct pair of its set is 60 bits apart, and a fifth of that is kept as margin."""
REDUCED_SIDE = 256
"""The longest side the picture is reduced to before the margin is looked for (the hash itself reads 64 x 64)."""
MARGIN_TOLERANCE = 4
"""How far (grey levels) a margin's pixel may be from the margin's colour. Strict: at 12 grey levels and 97%
of a line, a photo's own near-uniform edges (a bright sky, paper made white by a brightness change) were
trimmed in one copy and not in another, and 14% of the brightness and contrast copies were lost."""
MARGIN_SHARE = 0.99
"""The share of a line's pixels that must be of the margin's colour for the line to be margin."""
MAX_MARGIN = 0.3
"""At most this share of each side is trimmed (a photo of a white wall is not trimmed away)."""


def perceptual_hash(image: Image.Image) -> str:
    """The picture's 256-bit perceptual hash, as 64 lowercase hex digits."""
    import imagehash  # at the first library add, not at a server's start

    grey = _reduced_grey(image)
    return str(imagehash.phash(grey.crop(margin_box(grey)), hash_size=HASH_SIZE))


def is_perceptual_hash(value: object) -> bool:
    """A hash as ``perceptual_hash`` writes it (what a restore may hand the store)."""
    return isinstance(value, str) and 0 < len(value) <= 128 and all(c in "0123456789abcdef" for c in value)


def hash_distance(a: str, b: str) -> int:
    """How many bits differ between two perceptual hashes (the Hamming distance)."""
    if len(a) != len(b):
        raise ValueError(f"perceptual hashes of different lengths ({len(a)} and {len(b)} hex digits)")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _reduced_grey(image: Image.Image) -> Image.Image:
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # as the model's input is made (palette, alpha, 16-bit, CMYK...)
    scale = REDUCED_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return image.convert("L")


def margin_box(grey: Image.Image) -> tuple[int, int, int, int]:
    """The picture inside a uniform frame: trimmed only when all four sides have a margin of one colour,
    so a photo whose one edge is flat (a white sky, a wall) is hashed whole, as its copies are."""
    pixels = np.asarray(grey, dtype=np.int16)
    height, width = pixels.shape
    sides = [
        _margin(pixels, int(height * MAX_MARGIN)),
        _margin(pixels[::-1], int(height * MAX_MARGIN)),
        _margin(pixels.T, int(width * MAX_MARGIN)),
        _margin(pixels.T[::-1], int(width * MAX_MARGIN)),
    ]
    counts = [count for count, _ in sides]
    colours = [colour for _, colour in sides]
    if min(counts) == 0 or max(colours) - min(colours) > MARGIN_TOLERANCE:
        return 0, 0, width, height
    top, bottom, left, right = counts
    return left, top, width - right, height - bottom


def _margin(lines: np.ndarray, limit: int) -> tuple[int, float]:
    """How many of the first ``lines`` (at most ``limit``) are of the first line's colour, and that colour."""
    colour = float(np.median(lines[0]))
    count = 0
    while count < limit and np.mean(np.abs(lines[count] - colour) <= MARGIN_TOLERANCE) >= MARGIN_SHARE:
        count += 1
    return count, colour
