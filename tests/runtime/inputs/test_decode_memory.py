"""Each format's decoding memory estimate (the decode budget's unit) against the peak a decode measures.

Each case decodes a large image in a fresh process (its peak resident memory rises only for the decode)
and holds the estimate to at least that peak and at most twice it, plus a few MB: a format whose
decoder holds more than its factor says would let the decodes in progress overrun ``decode_memory_mb``
(48 MP WebPs rose 1.4 GB over a 1 GB budget), and one far above it would decode images one by one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.inputs.images import ALLOWED_FORMATS, DECODE_BYTES_PER_PIXEL, DECODE_OVERHEAD_BYTES

ROOT = Path(__file__).resolve().parents[3]
MB = 1024 * 1024
MP48, MP24, MP12 = (8064, 6048), (5664, 4248), (4032, 3024)

# One decode as the server does it (reduced scale for a 224 px model input), in a process of its own.
MEASURE = """
import json, sys
from pathlib import Path
from runtime.inputs.images import ImageLimits, ImageSpec, _draft, decode_bytes, image_to_pixels, open_image

def status(key):
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024

data, limits = Path(sys.argv[1]).read_bytes(), ImageLimits()
opened = open_image(data, "img", limits)
full_size = opened.size
_draft(opened, 224)
estimate = decode_bytes(opened, full_size)
del opened
Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current VmRSS
before = status("VmRSS")
image_to_pixels(data, "img", ImageSpec(224), limits, draft_to=224, budget=None)
print(json.dumps({"estimate": estimate, "peak": status("VmHWM") - before}))
"""

CASES = {
    "JPEG": (MP48, "RGB", {"quality": 85}),
    "JPEG progressive": (MP48, "RGB", {"quality": 85, "progressive": True}),
    "JPEG progressive CMYK": (MP48, "CMYK", {"quality": 85, "progressive": True}),
    "PNG RGBA": (MP48, "RGBA", {"compress_level": 1}),
    "WEBP": (MP48, "RGB", {"quality": 80, "method": 0}),
    "TIFF deflate": (MP48, "RGB", {"compression": "tiff_adobe_deflate"}),
    "BMP": (MP48, "RGB", {}),
    "GIF": (MP24, "RGB", {}),
    "AVIF 4:4:4": (MP12, "RGB", {"quality": 50, "speed": 10, "subsampling": "4:4:4"}),
    "HEIF": (MP12, "RGB", {"quality": 80, "enc_params": {"preset": "ultrafast"}}),
}


def picture(size: tuple[int, int], mode: str) -> Image.Image:
    """Smooth gradients with a coarse pattern over them (uint8 all along: a 48 MP picture in a second)."""
    width, height = size
    rows = np.arange(height, dtype=np.uint16)[:, None]
    columns = np.arange(width, dtype=np.uint16)[None, :]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = (columns * 255 // width).astype(np.uint8)
    pixels[..., 1] = (rows * 255 // height).astype(np.uint8)
    pixels[..., 2] = (((rows // 64 + columns // 64) % 2) * 120 + 60).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def encoded(size: tuple[int, int], mode: str, fmt: str, save_args: dict) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    picture(size, mode).save(out, format=fmt, **save_args)
    return out.getvalue()


def test_every_format_the_decoder_accepts_has_a_measured_factor():
    assert set(DECODE_BYTES_PER_PIXEL) == set(ALLOWED_FORMATS)
    measured = {case.split()[0] for case in CASES} | {"MPO"}  # MPO: JPEG frames, decoded by libjpeg
    assert measured == set(ALLOWED_FORMATS)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("case", CASES)
def test_the_decode_estimate_covers_the_measured_peak_and_not_twice_it(case, tmp_path):
    size, mode, save_args = CASES[case]
    image_file = tmp_path / "image"
    image_file.write_bytes(encoded(size, mode, case.split()[0], save_args))
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(image_file)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.splitlines()[-1])
    estimate, peak = measured["estimate"], measured["peak"]
    figures = f"{case}: estimate {estimate / MB:.0f} MB, measured peak {peak / MB:.0f} MB"
    assert peak <= estimate, figures
    assert estimate <= 2 * peak + 2 * DECODE_OVERHEAD_BYTES, figures
