"""A library's small picture of each image: a WebP of at most ``THUMBNAIL_SIDE`` px and ``MAX_THUMBNAIL_BYTES``,
made from the pixels already decoded for the embedding (the model's centre square), so it costs no
second decode. Libraries never keep the image itself."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 160
MAX_THUMBNAIL_BYTES = 8 * 1024
QUALITIES = (80, 65, 50, 35, 20)  # the first that fits in MAX_THUMBNAIL_BYTES
THUMBNAIL_MEDIA_TYPE = "image/webp"


def make_thumbnail(pixels: np.ndarray) -> bytes:
    """``pixels``: the model's input (size x size x 3 uint8). A WebP of at most THUMBNAIL_SIDE px, within
    MAX_THUMBNAIL_BYTES (a busier picture gets a lower quality)."""
    picture = Image.fromarray(pixels)
    if max(picture.size) > THUMBNAIL_SIDE:
        picture = picture.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    for quality in QUALITIES:
        encoded = io.BytesIO()
        picture.save(encoded, format="WEBP", quality=quality, method=4)
        if encoded.tell() <= MAX_THUMBNAIL_BYTES:
            return encoded.getvalue()
    picture = picture.resize((THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE // 2), Image.Resampling.LANCZOS)
    encoded = io.BytesIO()
    picture.save(encoded, format="WEBP", quality=QUALITIES[-1])
    return encoded.getvalue()
