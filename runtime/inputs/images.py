"""Bytes to model input: decoding, validation and OpenCLIP's preprocessing, in one place.

Only Pillow, pillow-heif and NumPy are used, so the light front function (no torch) can prepare
images too. The steps match open_clip's default eval transform (resize the shortest side with
bicubic filtering, centre crop, RGB, scale to [0, 1], normalise); a test checks they agree.

Hostile images are bounded before any pixel is decoded: the header's size against the side and
pixel limits, a JPEG's scan count against ``max_jpeg_scans`` (each progressive scan is another
pass over every coefficient). Work after decoding is bounded by what the model needs: only the
centre square (plus the resampling filter's reach) is converted and resized, whatever the shape.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from runtime.engines.catalog import CatalogModel
from runtime.errors import InvalidInput
from runtime.libraries.perceptual import perceptual_hash
from runtime.settings import Settings

log = logging.getLogger("runtime")

# Pillow's format name -> the name the API's messages use. GIF, TIFF, WebP, AVIF, HEIF: first frame or page.
ALLOWED_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "BMP": "BMP",
    "WEBP": "WebP",
    "GIF": "GIF",
    "TIFF": "TIFF",
    "AVIF": "AVIF",
    "HEIF": "HEIC",
}
REDUCED_SCALE_FORMATS = ("JPEG", "MPO", "HEIF")  # libjpeg's 1/2..1/8 scaling; HEIF's faithful thumbnails
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
FILTER_REACH = 2  # source pixels a bicubic (or bilinear: 1) tap reaches on each side, at scale 1
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

# Once, at import: HEIC/HEIF through pillow-heif (Pillow reads AVIF itself).
pillow_heif.register_heif_opener()


def image_suffixes() -> frozenset[str]:
    """The file name endings of the formats the decoder accepts (lower case), as Pillow and pillow-heif
    register them: an import reads exactly the files a request could send."""
    Image.init()
    return frozenset(suffix for suffix, name in Image.registered_extensions().items() if name in ALLOWED_FORMATS)


IMAGE_SUFFIXES = image_suffixes()

# The first bytes of each accepted format's files (HEIC and AVIF: an ISO-BMFF "ftyp" box at offset 4).
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
BMFF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts as a file of an accepted format does (whatever the request's Content-Type said)."""
    if data.startswith(IMAGE_SIGNATURES):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in BMFF_BRANDS


@dataclass(frozen=True)
class ImageSpec:
    """What a model wants from an image."""

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: str = "shortest"
    """``shortest``: shortest side to ``size``, then the centre square; ``squash``: the whole image to the square."""
    interpolation: str = "bicubic"
    """``bicubic`` or ``bilinear``: open_clip's names (the catalog's ``interpolation`` column)."""


def catalog_spec(model: CatalogModel) -> ImageSpec:
    """The preprocessing of a catalogued model (runtime/engines/catalog.csv)."""
    return ImageSpec(model.image_size, model.image_mean, model.image_std, model.resize, model.interpolation)


@dataclass(frozen=True)
class ImageLimits:
    """What an image may claim and cost (the ``runtime.settings`` fields of the same names); None: not checked."""

    max_side: int = 8192
    max_pixels: int | None = 50_000_000
    max_jpeg_scans: int | None = 32
    max_jpeg_scan_pixels: int | None = 1_000_000_000

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        """The limits the settings give (every input path, requests and imports alike, applies these)."""
        return cls(
            settings.max_image_side, settings.max_image_pixels, settings.max_jpeg_scans, settings.max_jpeg_scan_pixels
        )


def decode_image(data: bytes, field: str, limits: ImageLimits, *, draft_to: int | None = None) -> Image.Image:
    """Open and fully validate an image (first frame); JPEG and HEIC are decoded at reduced scale when allowed.

    ``draft_to`` is the smallest size the shorter side may be reduced to (None: full size).
    Anything malformed inside the file is a 400 ``invalid_image``; broken EXIF is ignored.
    """
    return _load(open_image(data, field, limits), field, draft_to)


def image_to_pixels(
    data: bytes, field: str, spec: ImageSpec, limits: ImageLimits, *, draft_to: int | None, budget: DecodeBudget | None
) -> np.ndarray:
    """Bytes to the model's ``spec.size`` square uint8 input; the decode waits its turn in ``budget``."""
    with _decoded(data, field, limits, draft_to, budget) as (image, _):
        return _prepared(image, spec, field)


@dataclass(frozen=True)
class LibraryPixels:
    """A decoded image as a library add keeps it: the model's input, and what the library stores of the
    picture itself."""

    pixels: np.ndarray
    perceptual_hash: str
    """``runtime.libraries.perceptual.perceptual_hash`` of the full frame, upright, before the model's crop."""
    size: tuple[int, int]
    """Width and height of the upright original in pixels (before any reduced-scale decode)."""


def image_to_library_pixels(
    data: bytes, field: str, spec: ImageSpec, limits: ImageLimits, *, draft_to: int | None, budget: DecodeBudget | None
) -> LibraryPixels:
    """As ``image_to_pixels``, with the picture's perceptual hash and size from the same decoded image."""
    with _decoded(data, field, limits, draft_to, budget) as (image, size):
        pixels = _prepared(image, spec, field)
        try:
            return LibraryPixels(pixels, perceptual_hash(image), size)
        except Exception as exc:  # a pixel mode with no conversion to grayscale
            raise InvalidInput(f"{field}: the image cannot be hashed ({exc})", code="invalid_image") from exc


@contextmanager
def _decoded(
    data: bytes, field: str, limits: ImageLimits, draft_to: int | None, budget: DecodeBudget | None
) -> Iterator[tuple[Image.Image, tuple[int, int]]]:
    """The image decoded (drafted to ``draft_to``, upright) while its decode memory is reserved in
    ``budget``, and the upright size of the original."""
    image = open_image(data, field, limits)
    full_size = image.size
    if draft_to:
        _draft(image, draft_to)
    drafted = image.size
    with budget.reserve(decode_bytes(image, full_size)) if budget else nullcontext():
        image = _load(image, field, None)
        turned = image.size != drafted  # EXIF turned it a quarter (a square draft keeps its area either way)
        yield image, (full_size[1], full_size[0]) if turned else full_size


def _prepared(image: Image.Image, spec: ImageSpec, field: str) -> np.ndarray:
    try:
        return prepare_image(image, spec)
    except Exception as exc:  # e.g. a pixel mode with no conversion to RGB
        raise InvalidInput(f"{field}: the image cannot be converted to RGB ({exc})", code="invalid_image") from exc


def open_image(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    """Read an image's header and check it against the limits; no pixel is decoded yet.

    A JPEG's decoding cost is about its scans times its pixels (each progressive scan is a pass
    over every block, however few bytes it takes: 18 KB of repeated scans cost 12 s), so both
    the scan count and scans x pixels are bounded. The count is left in ``image.info["scans"]``
    (0 for other formats) for the decoding memory estimate.
    """
    if not data:
        raise InvalidInput(f"{field}: the image is empty (0 bytes)", code="not_an_image")
    scans = jpeg_scan_count(data) if data.startswith(b"\xff\xd8") else 0
    if limits.max_jpeg_scans is not None and scans > limits.max_jpeg_scans:
        raise InvalidInput(
            f"{field}: the JPEG has {scans} scans; at most {limits.max_jpeg_scans} (setting max_jpeg_scans)",
            code="image_too_complex",
        )
    image = _open(data, field, limits)
    width, height = image.size
    if limits.max_jpeg_scan_pixels is not None and scans * width * height > limits.max_jpeg_scan_pixels:
        raise InvalidInput(
            f"{field}: the JPEG has {scans} scans of {width}x{height} px; scans x pixels may be at most "
            f"{limits.max_jpeg_scan_pixels:,} (setting max_jpeg_scan_pixels)",
            code="image_too_complex",
        )
    image.info["scans"] = scans
    return image


def _draft(image: Image.Image, draft_to: int) -> None:
    if image.format in REDUCED_SCALE_FORMATS:
        # libjpeg scales by 1/2, 1/4 or 1/8 while decoding, never below the requested size, so a
        # 48 MP photo is not decoded in full for a 224 px input; pillow-heif picks an embedded
        # thumbnail only when it is a scaled copy of the image (same crop, rotation, profile).
        image.draft("RGB", (draft_to, draft_to))


def _load(image: Image.Image, field: str, draft_to: int | None) -> Image.Image:
    try:
        if draft_to:
            _draft(image, draft_to)
        image.load()
        return upright(image)
    except Image.DecompressionBombError as exc:
        raise _bomb(field) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{field}: the image data is truncated or corrupt ({exc})", code="invalid_image") from exc
    except Exception as exc:  # a decoder is a parser of hostile bytes: any failure is the file's
        log.warning("image decoder failed on %s: %r", field, exc)
        raise InvalidInput(
            f"{field}: the image data is corrupt ({exc.__class__.__name__})", code="invalid_image"
        ) from exc


def _open(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb(field) from exc
        except UnidentifiedImageError as exc:
            raise InvalidInput(f"{field}: the data is not an image Pillow can read", code="not_an_image") from exc
        except Exception as exc:  # any of OSError, SyntaxError, ValueError, struct.error... from a header parser
            raise InvalidInput(f"{field}: the image header is corrupt ({exc})", code="invalid_image") from exc
    if image.format not in ALLOWED_FORMATS:
        allowed = ", ".join(dict.fromkeys(ALLOWED_FORMATS.values()))
        raise InvalidInput(
            f"{field}: image format {image.format} is not supported (use {allowed})", code="unsupported_format"
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInput(f"{field}: the image is {width}x{height} px", code="invalid_image")
    if max(width, height) > limits.max_side:
        raise InvalidInput(
            f"{field}: the image is {width}x{height} px; the longest side may be at most {limits.max_side} px "
            "(setting max_image_side)",
            code="image_too_large",
        )
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise InvalidInput(
            f"{field}: the image is {width}x{height} px ({width * height / 1e6:.1f} MP); at most "
            f"{limits.max_pixels / 1e6:.1f} MP (setting max_image_pixels)",
            code="image_too_large",
        )
    return image


def _bomb(field: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: the image claims more pixels than allowed (decompression bomb)", code="decompression_bomb"
    )


# --- decoding memory ------------------------------------------------------------------------


DECODE_BYTES_PER_PIXEL = {
    "JPEG": 10.5,
    "MPO": 10.5,
    "PNG": 10.5,
    "BMP": 10.5,
    "TIFF": 10.5,
    "GIF": 5.0,
    "WEBP": 18.5,
    "AVIF": 14.5,
    "HEIF": 11.0,
}
"""Peak bytes a pixel costs from decoding to the model's input, by format, at the size the image is decoded
at (a JPEG's or a HEIC's reduced scale): Pillow's image (4 bytes a pixel in every mode but P and L: GIF),
the centre square's crop and its RGB copy (3 + 3 for a 4:3 picture), and what the decoder holds besides
(WebP: libwebp's two RGBA canvases and the frame's bytes, 8 more; AVIF and HEIC: the YUV planes).
Measured, not derived: tests/runtime/inputs/test_decode_memory.py decodes a large image of each format in
a fresh process and holds each factor between the peak it measures and twice that."""
JPEG_COEFFICIENT_BYTES = 2
"""A JPEG of several scans (progressive) is decoded through a buffer of every DCT coefficient of the full-size
image, 2 bytes each, whatever the reduced scale: 3 bytes a pixel for 4:2:0, 6 for 4:4:4, 8 for CMYK."""
DECODE_OVERHEAD_BYTES = 4 * 1024 * 1024
"""A decoder's fixed buffers (libjpeg's at reduced scale, zlib's window), whatever the size."""


def decode_bytes(image: Image.Image, full_size: tuple[int, int]) -> int:
    """Estimated peak memory of decoding an opened image at its (drafted) size and preparing it;
    ``full_size`` is its size before any reduced-scale draft."""
    width, height = image.size
    estimate = DECODE_OVERHEAD_BYTES + width * height * DECODE_BYTES_PER_PIXEL[image.format or ""]
    if image.info.get("scans", 0) > 1:
        estimate += full_size[0] * full_size[1] * JPEG_COEFFICIENT_BYTES * jpeg_samples_per_pixel(image)
    return math.ceil(estimate)


def jpeg_samples_per_pixel(image: Image.Image) -> float:
    """Coefficients a JPEG stores per pixel: each component's share of the full-resolution grid (its
    sampling factors against the largest), summed; 4 (CMYK, no subsampling) when the header says nothing."""
    components = getattr(image, "layer", [])  # Pillow's (id, horizontal, vertical, table) of each component
    if not components:
        return 4.0
    widest = max(h for _, h, _, _ in components) * max(v for _, _, v, _ in components)
    return sum(h * v for _, h, v, _ in components) / widest


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BUFFER_BYTES = 8 * 1024 * 1024


def unmap_large_buffers_when_freed() -> None:
    """Every allocation of 8 MB or more gets a mapping of its own, unmapped when freed (glibc; elsewhere a no-op).

    By default glibc raises that threshold to the size of each large buffer freed (up to 32 MB) and keeps
    smaller freed buffers resident for reuse, in one arena per thread: the decoder threads' freed images
    (Pillow's 16 MB blocks) added up past the decode budget (a batch of 32 x 48 MP WebPs: 1,985 MB of peak
    growth over a budget of 1,024). The budget bounds the memory of the decodes in progress only if what
    finished decodes freed goes back to the system."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):  # no C library of that name, or one without mallopt
        return
    mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)


class DecodeBudget:
    """A process-wide bound on the pixel memory of decodes in progress (first come, first served).

    A decode reserves its estimate before any pixel is decoded and returns it when its image is
    prepared; one estimate larger than the whole budget waits until nothing else is decoding.
    """

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self.in_use = 0
        self._turns = threading.Condition()
        self._queue: list[object] = []

    @contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        amount = min(amount, self.capacity)
        ticket = object()
        with self._turns:
            self._queue.append(ticket)
            self._turns.wait_for(lambda: self._queue[0] is ticket and self.in_use + amount <= self.capacity)
            self._queue.pop(0)
            self.in_use += amount
            self._turns.notify_all()
        try:
            yield
        finally:
            with self._turns:
                self.in_use -= amount
                self._turns.notify_all()


# --- JPEG structure -----------------------------------------------------------------------

# In entropy-coded data 0xFF is followed by 0x00 (stuffing), 0xD0-0xD7 (restart markers) or another
# 0xFF (fill); anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8}
SOS, EOI = 0xDA, 0xD9


def jpeg_scan_count(data: bytes) -> int:
    """How many scans (SOS segments) a JPEG holds, read from its markers without decoding.

    Segments are skipped by their lengths and entropy-coded data by one regex search each, so the
    walk costs one C scan of the file. Scans inside APPn payloads (EXIF thumbnails) are not counted.
    """
    scans, pos, end = 0, 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == EOI:
            break
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker == SOS:
            scans += 1
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return scans


# --- orientation --------------------------------------------------------------------------

_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
EXIF_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; EXIF that cannot be read is ignored.

    EXIF arrives in many containers (JPEG APP1, PNG ``eXIf`` and raw-profile text chunks, WebP and
    HEIC boxes) and each can be garbage; a picture with unreadable EXIF is still a picture.
    """
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION)
    except Exception as exc:  # any of struct.error, SyntaxError, ValueError, TypeError... from EXIF parsing
        log.info("ignoring unreadable EXIF: %r", exc)
        return image
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


# --- to the model's input -------------------------------------------------------------------


def prepare_image(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The model's ``spec.size`` square uint8 HxWx3 input, resized as open_clip's inference transform does.

    ``shortest``: shortest side to the size, centre crop. The same pixels as resizing the whole image
    and then cropping (Pillow's ``box`` maps the output onto the same source coordinates, with the
    filter reaching past the box), but only the centre square and the filter's reach are converted and
    resampled: a 1 x 8192 px strip costs no more than a small square, and a 48 MP photo is not copied
    whole. ``squash``: the whole image to the square, its aspect ratio not kept.
    """
    size, resampling = spec.size, RESAMPLING[spec.interpolation]
    if spec.resize == "squash":
        return np.asarray(image.convert("RGB").resize((size, size), resampling), dtype=np.uint8)
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_width, new_height = (size, new_long) if width <= height else (new_long, size)
    left = int(round((new_width - size) / 2.0))
    top = int(round((new_height - size) / 2.0))
    scale_x, scale_y = width / new_width, height / new_height
    box = (left * scale_x, top * scale_y, (left + size) * scale_x, (top + size) * scale_y)
    region = _with_filter_reach(box, scale_x, scale_y, width, height)
    image = image.crop(region).convert("RGB")
    shifted = (box[0] - region[0], box[1] - region[1], box[2] - region[0], box[3] - region[1])
    image = image.resize((size, size), resampling, box=shifted)
    return np.asarray(image, dtype=np.uint8)


def _with_filter_reach(
    box: tuple[float, float, float, float], scale_x: float, scale_y: float, width: int, height: int
) -> tuple[int, int, int, int]:
    reach_x = math.ceil(FILTER_REACH * max(scale_x, 1.0)) + 1
    reach_y = math.ceil(FILTER_REACH * max(scale_y, 1.0)) + 1
    return (
        max(0, math.floor(box[0]) - reach_x),
        max(0, math.floor(box[1]) - reach_y),
        min(width, math.ceil(box[2]) + reach_x),
        min(height, math.ceil(box[3]) + reach_y),
    )


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


def configure_pillow(max_pixels: int) -> None:
    """Pillow refuses any header that claims more than twice ``max_pixels`` before decoding it.

    Images just over the limits are refused by ``decode_image`` with a message that names the
    limit; Pillow's own guard (every format, pillow-heif's too) catches headers that claim absurd sizes.
    """
    Image.MAX_IMAGE_PIXELS = 2 * max_pixels
