"""Every bad input is a 4xx with {"message", "code"} and a message that names the field."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import FileServer

PNG = image_bytes(1)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims a size its data does not have (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def ico_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="ICO")
    return out.getvalue()


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    return out.getvalue()


@pytest.fixture(scope="module")
def files():
    server = FileServer(
        {
            "/page.html": (200, {"Content-Type": "text/html"}, b"<html>hello</html>"),
            "/missing.png": (404, {}, b"nope"),
            "/huge.png": (200, {"Content-Type": "image/png", "Content-Length": str(10**9)}, b""),
        }
    )
    yield server
    server.close()


CASES = [
    # (body, expected status, code, words the message must contain)
    (b"{not json", 400, "invalid_json", ["request body"]),
    (b"[1, 2]", 400, "invalid_json", ["request body"]),
    ({}, 400, "missing_input", ["url", "img", "text"]),
    ({"img": b64(PNG), "url": "http://example.com/a.png"}, 400, "ambiguous_input", ["url", "img"]),
    ({"img_1": b64(PNG), "url_1": "https://example.com/x.png", "img_2": b64(PNG)}, 400, "ambiguous_input", ["img_1"]),
    ({"img_1": b64(PNG)}, 400, "missing_input", ["slot 2"]),
    ({"img": b64(PNG), "img_2": b64(PNG)}, 400, "ambiguous_input", ["mode"]),
    ({"image": b64(PNG)}, 400, "unknown_field", ["image"]),
    ({"inputs": [{"img": b64(PNG), "colour": 1}]}, 400, "unknown_field", ["inputs[0].colour"]),
    ({"img": 42}, 400, "invalid_type", ["img"]),
    ({"img": "not base64 at all!"}, 400, "invalid_base64", ["img"]),
    ({"img": ""}, 400, "invalid_base64", ["img"]),
    ({"img": b64(b"just some text, not an image")}, 400, "not_an_image", ["img"]),
    ({"img_2": b64(ico_bytes()), "text_1": "x"}, 400, "unsupported_format", ["img_2", "ICO"]),
    ({"img": b64(image_bytes(2, size=(9000, 10)))}, 400, "image_too_large", ["img", "8192"]),
    ({"img": b64(png_header_claiming(100_000, 100_000))}, 400, "decompression_bomb", ["img"]),
    ({"img": b64(PNG[: len(PNG) // 2])}, 400, "invalid_image", ["img"]),
    ({"img": b64(b"x" * (21 * 1024 * 1024))}, 400, "image_too_large", ["img"]),
    ({"text": "   "}, 400, "text_empty", ["text"]),
    ({"text": "x" * 1001}, 400, "text_too_long", ["text", "1000"]),
    ({"inputs": [{"text": "ok"}, {"img": "%%%"}]}, 400, "invalid_base64", ["inputs[1].img"]),
    ({"inputs": [{"text": "ok"}, {}]}, 400, "missing_input", ["inputs[1]"]),
    ({"inputs": []}, 400, "missing_input", ["inputs"]),
    ({"url": "ftp://example.com/a.png"}, 400, "url_refused", ["url", "ftp"]),
    ({"url": "file:///etc/passwd"}, 400, "url_refused", ["url"]),
    ({"url": "http://user:pw@example.com/a.png"}, 400, "url_refused", ["url", "credentials"]),
    ({"url": "http://no-such-host.invalid/a.png"}, 400, "url_unreachable", ["url"]),
    ({"url": "s3://only-bucket"}, 400, "invalid_url", ["url"]),
]


@pytest.mark.parametrize("body,status,code,words", CASES, ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_bad_input_is_a_clear_4xx(server, body, status, code, words):
    response = server.post("/image-similarity", body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"message", "code"}
    assert payload["code"] == code, payload
    for word in words:
        assert word in payload["message"], payload


@pytest.mark.parametrize(
    "path,code",
    [("/page.html", "url_not_image"), ("/missing.png", "url_unreachable"), ("/huge.png", "image_too_large")],
)
def test_url_failures_name_the_field(server, files, path, code):
    response = server.post("/image-similarity", {"url_1": files.base + path, "text_2": "x"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert response.json()["message"].startswith("url_1")


def test_request_body_over_the_limit_is_413(tiny_settings, tiny_engine):
    from tests.fakes.servers import LiveServer

    with LiveServer.start(tiny_settings.replace(max_request_bytes=1000), tiny_engine) as small:
        response = small.post("/image-similarity", {"text": "x" * 2000})
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


def test_unknown_route_and_method_have_the_error_shape(server):
    missing = server.client.get("/nothing-here")
    assert missing.status_code == 404 and set(missing.json()) == {"message", "code"}
    wrong = server.client.get("/image-similarity")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
