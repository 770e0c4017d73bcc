"""Bytes to model input: decoding, validation and OpenCLIP's preprocessing, in one place.

Only Pillow and NumPy are used, so the light front function (no torch) can prepare images too.
The steps match open_clip's default eval transform (resize the shortest side with bicubic
filtering, centre crop, RGB, scale to [0, 1], normalise); a test checks they agree.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.errors import InvalidInput

ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "BMP": "BMP", "WEBP": "WebP", "MPO": "JPEG"}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageSpec:
    """What a model wants from an image."""

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD


def decode_image(data: bytes, field: str, *, max_side: int, draft_to: int | None = None) -> Image.Image:
    """Open and fully validate an image; JPEGs are decoded at reduced scale when allowed.

    ``draft_to`` is the smallest size the shorter side may be reduced to (None: full size).
    """
    if not data:
        raise InvalidInput(f"{field}: the image is empty (0 bytes)", code="not_an_image")
    image = _open(data, field, max_side)
    if draft_to and image.format in ("JPEG", "MPO"):
        # Pillow's draft mode lets libjpeg scale by 1/2, 1/4 or 1/8 while decoding, never
        # below the requested size, so a 12 MP photo is not decoded in full for a 224 px input.
        image.draft("RGB", (draft_to, draft_to))
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(field) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{field}: the image data is truncated or corrupt ({exc})", code="invalid_image") from exc
    return ImageOps.exif_transpose(image)


def _open(data: bytes, field: str, max_side: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb(field) from exc
        except UnidentifiedImageError as exc:
            raise InvalidInput(f"{field}: the data is not an image Pillow can read", code="not_an_image") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(f"{field}: the image header is corrupt ({exc})", code="invalid_image") from exc
    if image.format not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted(set(ALLOWED_FORMATS.values())))
        raise InvalidInput(
            f"{field}: image format {image.format} is not supported (use {allowed})", code="unsupported_format"
        )
    width, height = image.size
    if max(width, height) > max_side:
        raise InvalidInput(
            f"{field}: the image is {width}x{height} px; the longest side may be at most {max_side} px",
            code="image_too_large",
        )
    return image


def _bomb(field: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: the image claims more pixels than allowed (decompression bomb)", code="decompression_bomb"
    )


def prepare_image(image: Image.Image, size: int) -> np.ndarray:
    """Shortest side to ``size`` (bicubic), centre crop to ``size`` x ``size``: uint8 HxWx3."""
    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    width, height = image.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """A batch of uint8 NxHxWx3 arrays to the float32 NCHW tensor the model reads."""
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    batch = (scaled - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless encoding of a prepared image, for sending it to a remote engine."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def configure_pillow(max_side: int) -> None:
    """Pillow refuses any image with more pixels than four max-size squares before decoding it.

    Images just over the side limit are refused by ``decode_image`` with a message that names
    the limit; Pillow's own guard catches headers that claim absurd sizes.
    """
    Image.MAX_IMAGE_PIXELS = (2 * max_side) ** 2
