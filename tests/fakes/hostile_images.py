"""Crafted image files for the hostile-input tests: bombs, lying headers, odd shapes, broken EXIF."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import pillow_heif
from PIL import Image

from tests.fakes.images import image_bytes

pillow_heif.register_heif_opener()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_png_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """The PNG with one more chunk just before its first IDAT."""
    at = png.index(b"IDAT") - 4
    return png[:at] + png_chunk(kind, payload) + png[at:]


@cache
def png_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of zeros: a few hundred KB that inflate to width x height bytes (``rows`` of them)."""
    idat = zeros_deflated((width + 1) * (height if rows is None else rows))  # each row: filter byte + pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zeros_deflated(size: int) -> bytes:
    """zlib data that inflates to ``size`` zero bytes, made in milliseconds: one megabyte is compressed
    and its compressed form repeated (a full flush after each makes every copy inflate on its own), then
    the stream ends with the checksum of the whole. Compressing 400 MB took 2.3 s here."""
    chunk = bytes(1 << 20)
    copies, rest = divmod(size, len(chunk))
    packer = zlib.compressobj(9)
    if copies < 2:
        return packer.compress(bytes(size)) + packer.flush()
    first = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    again = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)  # any later megabyte
    ending = packer.compress(bytes(rest)) + packer.flush()
    checksum = 1
    for _ in range(copies):
        checksum = zlib.adler32(chunk, checksum)
    checksum = zlib.adler32(bytes(rest), checksum)
    return first + again * (copies - 1) + ending[:-4] + struct.pack(">I", checksum)


def saved(image: Image.Image, fmt: str, **args) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **args)
    return out.getvalue()


@cache
def strip(width: int, height: int, fmt: str = "PNG") -> bytes:
    """A one-colour image of an extreme shape (1 x 8192 px and the like)."""
    return saved(Image.new("RGB", (width, height), (180, 40, 40)), fmt)


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0 baseline or SOF2 progressive) claims another size."""
    start = jpeg.find(b"\xff\xc0") if b"\xff\xc0" in jpeg else jpeg.index(b"\xff\xc2")
    return jpeg[: start + 5] + struct.pack(">HH", height, width) + jpeg[start + 9 :]


def jpeg_with_scans(scans: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A baseline JPEG whose one scan is repeated: a decoder takes each SOS as another pass."""
    data = image_bytes(2, size=size, fmt="JPEG")
    sos, eoi = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:sos] + data[sos:eoi] * scans + data[eoi:]


@cache
def progressive_scan_bomb(scans: int, size: tuple[int, int]) -> bytes:
    """A flat progressive JPEG whose last AC scan is repeated: each copy is a few bytes (one
    end-of-band run) but a full pass over every block (18 KB at 1024 x 1024 px: 12 s to decode)."""
    data = saved(Image.new("RGB", size, (120, 120, 120)), "JPEG", progressive=True, quality=90)
    starts = [at for at in range(len(data) - 1) if data[at] == 0xFF and data[at + 1] == 0xDA]
    last, end = starts[-1], data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


def isobmff_claiming(data: bytes, width: int, height: int) -> bytes:
    """A HEIC or AVIF file whose image spatial extent ('ispe') boxes claim another size."""
    out = bytearray(data)
    at = out.find(b"ispe")
    while at != -1:
        out[at + 8 : at + 16] = struct.pack(">II", width, height)  # after 'ispe', version and flags
        at = out.find(b"ispe", at + 4)
    return bytes(out)


def gif_claiming(width: int, height: int) -> bytes:
    gif = bytearray(saved(Image.new("P", (8, 8)), "GIF"))
    gif[6:10] = struct.pack("<HH", width, height)  # logical screen size
    return bytes(gif)


def bmp_claiming(width: int, height: int) -> bytes:
    bmp = bytearray(saved(Image.new("RGB", (8, 8)), "BMP"))
    bmp[18:26] = struct.pack("<ii", width, height)
    return bytes(bmp)


def tiff_claiming(width: int, height: int) -> bytes:
    tiff = saved(Image.new("RGB", (8, 8)), "TIFF")
    # little-endian IFD entries: tag 256 (width) and 257 (height), type SHORT or LONG
    out = bytearray(tiff)
    for tag, value in ((256, width), (257, height)):
        for kind in (3, 4):
            entry = struct.pack("<HHI", tag, kind, 1)
            at = out.find(entry)
            if at != -1:
                out[at : at + 12] = struct.pack("<HHII", tag, 4, 1, value)
    return bytes(out)


def webp_claiming(width: int, height: int) -> bytes:
    webp = bytearray(saved(Image.new("RGB", (8, 8)), "WEBP", lossless=True))
    at = webp.index(b"VP8L") + 8  # signature byte, then 14-bit width-1 and height-1
    bits = (width - 1) | ((height - 1) << 14)
    webp[at + 1 : at + 5] = (bits | (int.from_bytes(webp[at + 1 : at + 5], "little") & ~((1 << 28) - 1))).to_bytes(
        4, "little"
    )
    return bytes(webp)


GARBAGE_EXIF = [
    b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 12,  # 65535 entries promised, none there
    b"II*\x00\xff\xff\xff\x7f",  # first IFD far past the end
    b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09\x00\x00",  # orientation 9
    b"\x00" * 7,
    b"Exif\x00\x00" + b"\xde\xad" * 50,
]


def png_with_exif(payload: bytes, container: str, seed: int = 4) -> bytes:
    png = image_bytes(seed, size=(64, 48))
    if container == "eXIf":
        return with_png_chunk(png, b"eXIf", payload)
    if container == "zTXt raw profile":
        return with_png_chunk(png, b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(payload))
    raw = b"Raw profile type exif\x00\nexif\n      40\n" + payload.hex().encode() + b"zz\n"
    return with_png_chunk(png, b"tEXt", raw)


def webp_with_exif(payload: bytes, seed: int = 4) -> bytes:
    return saved(Image.open(io.BytesIO(image_bytes(seed, size=(64, 48)))), "WEBP", exif=payload)


def jpeg_with_exif(payload: bytes, seed: int = 4) -> bytes:
    jpeg = image_bytes(seed, size=(64, 48), fmt="JPEG")
    app1 = b"Exif\x00\x00" + payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
