"""Deterministic test pictures and their base64 form."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def image_bytes(seed: int = 0, size: tuple[int, int] = (64, 48), fmt: str = "PNG", **save_args) -> bytes:
    """A distinct, deterministic picture: smooth colour gradients plus a seeded pattern."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-2, 2, size=(2, 3))
    blocks = rng.integers(0, 60, size=(4, 4, 3))
    # Built in place, one tile at a time: fresh temporaries of a 48 MP picture cost seconds each here.
    pixels = np.empty((height, width, 3))
    pixels[:] = base + np.arange(width)[:, None] * slope[0] * 256 / width
    pixels += (np.arange(height)[:, None] * slope[1] * 256 / height)[:, None, :]
    tile_height, tile_width = height // 4 + 1, width // 4 + 1
    for row in range(4):
        for column in range(4):
            rows = slice(row * tile_height, (row + 1) * tile_height)
            columns = slice(column * tile_width, (column + 1) * tile_width)
            pixels[rows, columns] += blocks[row, column]
    np.clip(pixels, 0, 255, out=pixels)
    image = Image.fromarray(pixels.astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
