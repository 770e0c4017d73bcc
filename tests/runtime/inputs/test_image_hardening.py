"""Formats, shapes and malformed parts of images: each decoded within bounds, or a clear 400."""

from __future__ import annotations

import io
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InvalidInput
from runtime.inputs.images import (
    DecodeBudget,
    ImageLimits,
    ImageSpec,
    decode_image,
    image_to_pixels,
    jpeg_scan_count,
    prepare_image,
)
from tests.fakes.hostile_images import GARBAGE_EXIF, jpeg_with_scans, png_chunk, with_png_chunk
from tests.fakes.images import image_bytes

LIMITS = ImageLimits(max_side=8192, max_pixels=50_000_000, max_jpeg_scans=32)


def pixels_of(data: bytes, size: int = 224, limits: ImageLimits = LIMITS) -> np.ndarray:
    return image_to_pixels(data, "img", ImageSpec(size), limits, draft_to=size, budget=None)


def peak_growth(work) -> int:
    """Bytes this process's peak resident memory rose above its current size while ``work`` ran."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    work()
    return _status("VmHWM") - before


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "AVIF", "HEIF", "WEBP", "BMP", "JPEG"])
def test_every_format_gives_the_picture_the_png_gives(fmt):
    save_args = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF", "HEIF") else {}
    reference = pixels_of(image_bytes(7, size=(320, 240))).astype(np.float32)
    ours = pixels_of(image_bytes(7, size=(320, 240), fmt=fmt, **save_args)).astype(np.float32)
    tolerance = 40 if fmt == "GIF" else 12  # GIF: a 256-colour palette
    assert np.abs(ours - reference).mean() < tolerance


def test_gif_and_tiff_give_their_first_frame():
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue", "green")]
    for fmt in ("GIF", "TIFF"):
        out = io.BytesIO()
        frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:])
        pixels = pixels_of(out.getvalue(), size=32)
        assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 30, fmt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("size", [(1, 8192), (8192, 1), (2, 7000), (8192, 3), (1, 1)])
def test_extreme_aspect_ratios_cost_no_more_than_a_square(size):
    """A 1 x 8192 px strip resized before cropping is 224 x 1.8 M px (1.2 GB); cropped first, a few KB."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format="PNG")
    result: list[np.ndarray] = []
    grown = peak_growth(lambda: result.append(pixels_of(out.getvalue())))
    assert result[0].shape == (224, 224, 3)
    assert abs(int(result[0][..., 0].mean()) - 200) <= 1
    assert grown < 20 * 1024 * 1024


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (301, 97), (97, 301), (225, 224), (5, 700)])
def test_cropping_first_gives_the_same_pixels_as_resizing_the_whole_image(size):
    image = Image.open(io.BytesIO(image_bytes(5, size=size))).convert("RGB")
    width, height = size
    short, long = min(size), max(size)
    new_long = int(224 * long / short)
    whole = image.resize((224, new_long) if width <= height else (new_long, 224), Image.Resampling.BICUBIC)
    left, top = int(round((whole.width - 224) / 2.0)), int(round((whole.height - 224) / 2.0))
    expected = np.asarray(whole.crop((left, top, left + 224, top + 224)), dtype=np.int16)
    assert np.abs(prepare_image(image, ImageSpec(224)).astype(np.int16) - expected).max() <= 1


def test_progressive_jpeg_scans_are_counted_from_the_markers():
    baseline = image_bytes(1, size=(256, 256), fmt="JPEG")
    progressive = image_bytes(1, size=(256, 256), fmt="JPEG", progressive=True)
    assert jpeg_scan_count(baseline) == 1
    assert 2 <= jpeg_scan_count(progressive) <= 12
    with_thumbnail_app = baseline[:2] + b"\xff\xe1" + struct.pack(">H", 2 + 40) + b"\xff\xda" * 20 + baseline[2:]
    assert jpeg_scan_count(with_thumbnail_app) == 1  # SOS bytes inside an APP1 payload are not scans


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding():
    bomb = jpeg_with_scans(5000)
    assert jpeg_scan_count(bomb) == 5000
    with pytest.raises(InvalidInput) as refused:
        pixels_of(bomb)
    assert refused.value.code == "image_too_complex"
    assert "max_jpeg_scans" in refused.value.message


@pytest.mark.parametrize("payload", GARBAGE_EXIF, ids=range(len(GARBAGE_EXIF)))
def test_garbage_exif_in_a_png_is_ignored(payload):
    png = image_bytes(4, size=(64, 48))
    for kind, body in ((b"eXIf", payload), (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(payload))):
        assert pixels_of(with_png_chunk(png, kind, body), size=32).shape == (32, 32, 3)
    raw_text = b"Raw profile type exif\x00\nexif\n      40\n" + payload.hex().encode() + b"zz\n"
    assert pixels_of(with_png_chunk(png, b"tEXt", raw_text), size=32).shape == (32, 32, 3)


@pytest.mark.parametrize("payload", GARBAGE_EXIF, ids=range(len(GARBAGE_EXIF)))
def test_garbage_exif_in_a_webp_is_ignored(payload):
    out = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(4, size=(64, 48)))).save(out, format="WEBP", exif=payload)
    assert pixels_of(out.getvalue(), size=32).shape == (32, 32, 3)


def test_a_valid_exif_orientation_still_turns_the_picture():
    image = Image.new("RGB", (60, 30), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert decode_image(out.getvalue(), "img", ImageLimits(max_side=8192)).size == (30, 60)


@pytest.mark.parametrize(
    "size, code", [((8193, 10), "image_too_large"), ((8000, 7000), "image_too_large"), ((12000, 12000), None)]
)
def test_size_limits_are_read_from_the_header(size, code):
    """A header is enough: the PNG below has no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", *size, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    from runtime.inputs.images import configure_pillow

    configure_pillow(LIMITS.max_pixels)
    with pytest.raises(InvalidInput) as refused:
        pixels_of(png)
    assert refused.value.code == (code or "decompression_bomb")


@pytest.mark.slow
def test_a_48_megapixel_jpeg_is_accepted_and_decoded_at_reduced_scale():
    photo = image_bytes(9, size=(8064, 6048), fmt="JPEG", quality=85)
    image = decode_image(photo, "img", LIMITS, draft_to=224)
    assert image.size == (1008, 756)  # libjpeg's 1/8 scale: 3 MB of pixels instead of 195 MB


def test_the_decode_budget_holds_a_decode_back_until_memory_is_free():
    budget = DecodeBudget(100)
    order: list[str] = []
    with budget.reserve(80):
        waiter = threading.Thread(target=lambda: budget.reserve(50).__enter__() or order.append("second"))
        waiter.start()
        time.sleep(0.2)
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first done", "second"]


PHONE = (8064, 6048)  # 48 MP
PHONE_MEMORY_BOUND = {"JPEG": 200 * 1024 * 1024, "HEIF": 640 * 1024 * 1024}  # peak growth per image, bytes


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("fmt", ["JPEG", "HEIF"])
def test_a_48_megapixel_phone_photo_is_accepted_within_its_memory_bound(fmt):
    """JPEG decodes at 1/8 scale (1008 x 756); HEIC has no scaled decoding (libheif decodes whole
    tiles), so it is decoded in full: 146 MB of RGB plus libheif's YUV planes and copies."""
    bmp = Image.open(io.BytesIO(image_bytes(9, size=PHONE, fmt="BMP")))
    out = io.BytesIO()
    extra = {"enc_params": {"preset": "ultrafast"}} if fmt == "HEIF" else {}
    bmp.save(out, format=fmt, quality=80, **extra)
    del bmp
    photo = out.getvalue()
    result: list[np.ndarray] = []
    grown = peak_growth(lambda: result.append(pixels_of(photo)))
    assert result[0].shape == (224, 224, 3)
    assert grown < PHONE_MEMORY_BOUND[fmt], f"{fmt}: peak grew by {grown // 2**20} MB"
