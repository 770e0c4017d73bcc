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
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-2, 2, size=(2, 3))
    pixels = base + x[..., None] * slope[0] * 256 / width + y[..., None] * slope[1] * 256 / height
    blocks = rng.integers(0, 60, size=(4, 4, 3))
    pixels += np.kron(blocks, np.ones((height // 4 + 1, width // 4 + 1, 1)))[:height, :width]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
