"""Hostile inputs against the server as a separate process: each a 4xx, and its memory stays bounded.

The server is ``python -m runtime serve`` with the tiny model, so its resident memory can be read
from ``/proc/<pid>/status`` before and after the whole set: ``VmRSS`` (now) must not grow past
``RSS_GROWTH_BOUND`` and ``VmHWM`` (the peak) must not pass ``RSS_PEAK_BOUND`` above the warm
baseline. Every request runs under the client's ``REQUEST_TIMEOUT_S``: an answer that takes longer
fails the test. A slow URL (a loopback server trickling bytes) is cut at the fetch timeout.

Runtime: ~40 s on 2 cores (server start-up included).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bench.common import ServerProcess, server_args
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import FileServer
from tests.runtime.api.test_errors import gif_bytes, png_chunk, png_header_claiming

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")

MB = 1024 * 1024
ROUNDS = 2
RSS_GROWTH_BOUND = 300 * MB  # freed memory the allocator keeps for reuse (per-thread arenas)
RSS_REPEAT_BOUND = 50 * MB  # the same inputs again: no leak
RSS_PEAK_BOUND = 600 * MB
REQUEST_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 1.0
JPEG_HEADER = "data:image/jpeg;base64,"
SIMILARITY = "/image-similarity"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"

PNG = image_bytes(21)
JPEG = image_bytes(22, size=(640, 480), fmt="JPEG")


# --- crafted files ------------------------------------------------------------------------


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size."""
    start = JPEG.index(b"\xff\xc0")
    # marker (2), length (2), precision (1), then height and width (2 each)
    return JPEG[: start + 5] + struct.pack(">HH", height, width) + JPEG[start + 9 :]


def png_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of zeros: a few KB that inflate to width x height bytes (``rows`` of them)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def saved(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, format=fmt)
    return out.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"><rect width="10" height="10"/></svg>'


@dataclass(frozen=True)
class Hostile:
    name: str
    path: str
    body: bytes
    status: int
    code: str | None


def case(name: str, body: dict | bytes, code: str | None, status: int = 400, path: str = SIMILARITY) -> Hostile:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Hostile(name, path, raw, status, code)


def hostile_cases() -> list[Hostile]:
    add = "/libraries/hostile/images"
    return [
        # decompression bombs and lying headers
        case("png header claims 100000x100000", {"img": b64(png_header_claiming(10**5, 10**5))}, "decompression_bomb"),
        # within the limits, data shorter than the header says: Pillow fills in the rest (memory stays bounded)
        case("png 4096x4096 whose data stops after 64 rows", {"img": b64(png_zeros(4096, 4096, rows=64))}, None, 200),
        case("png zlib bomb 20000x20000 (400 MB)", {"img": b64(png_zeros(20000, 20000))}, "decompression_bomb"),
        case("png 5000x5000 zlib bomb", {"img": b64(png_zeros(5000, 5000))}, "image_too_large"),
        case("jpeg header claims 65000x65000", {"img": b64(jpeg_claiming(65_000, 65_000))}, "decompression_bomb"),
        case("jpeg header claims 4096x4096, data of 640x480", {"img": b64(jpeg_claiming(4096, 4096))}, None, 200),
        case("jpeg header claims 8000x2", {"img": b64(jpeg_claiming(8000, 2))}, "image_too_large"),
        case("bomb added to a library", {"img": b64(png_zeros(20_000, 20_000))}, "decompression_bomb", path=add),
        # truncated files
        case("png signature only", {"img": b64(PNG[:8])}, "not_an_image"),
        case("png cut in the header", {"img": b64(PNG[:20])}, "invalid_image"),
        case("png cut in half", {"img": b64(PNG[: len(PNG) // 2])}, "invalid_image"),
        case("jpeg SOI marker only", {"img": b64(JPEG[:2])}, "not_an_image"),
        case("jpeg cut in half", {"img": b64(JPEG[: len(JPEG) // 2])}, "invalid_image"),
        # another format where JPEG is claimed
        case("gif as data:image/jpeg", {"img": JPEG_HEADER + b64(gif_bytes())}, "unsupported_format"),
        case("tiff as data:image/jpeg", {"img": JPEG_HEADER + b64(saved("TIFF"))}, "unsupported_format"),
        case("svg as data:image/jpeg", {"img": JPEG_HEADER + b64(SVG)}, "not_an_image"),
        case("pdf as data:image/jpeg", {"img": JPEG_HEADER + b64(PDF)}, "not_an_image"),
        case("ico as data:image/jpeg", {"img": JPEG_HEADER + b64(saved("ICO"))}, "unsupported_format"),
        # empty
        case("zero-byte body", b"", "missing_field"),
        case("zero-byte image", {"img": ""}, "invalid_base64"),
        case("zero-byte body to a library add", b"", "missing_field", path=add),
        # huge strings
        case("30 MB base64 string", {"img": "A" * (30 * MB)}, "image_too_large"),
        case("30 MB of whitespace as base64", {"img": " " * (30 * MB)}, "invalid_base64"),
        case("30 MB of base64 pieces between spaces", {"img": "AB " * (10 * MB)}, "not_an_image"),
        case("30 MB text", {"text": "a" * (30 * MB)}, "text_too_long"),
        case("30 MB url", {"url": "http://" + "a" * (30 * MB)}, "url_unreachable"),
        case("40 MB body", {"img": "A" * (40 * MB)}, "payload_too_large", status=413),
        case("1 MB library name", {"name": "a" * MB}, "invalid_library_name", path="/libraries"),
        case("1 MB image id", {"img": b64(PNG), "id": "i" * MB}, "invalid_image_id", path=add),
        case("1 MB metadata", {"img": b64(PNG), "metadata": {"k": "v" * MB}}, "metadata_too_large", path=add),
        case("1 MB unknown field name", {"k" * MB: 1}, "unknown_field"),
        # JSON built to be expensive to parse
        case("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "json_too_large"),
        case("JSON nested 5,000 deep", b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid_json"),
        case("30 MB of empty objects", b'{"inputs":[' + b"{}," * (10 * MB) + b"{}]}", "json_too_large"),
        case("30 MB of numbers", b"[" + b"1," * (15 * MB) + b"1]", "json_too_large"),
        case("30 MB of short strings in a batch", b'{"inputs":[' + b'"a",' * (7 * MB) + b'"a"]}', "json_too_large"),
        case("batch of 10,000 slots", {"inputs": [{"text": "x"}] * 10_000}, "batch_too_large"),
    ]


# --- the server under test ----------------------------------------------------------------


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture(scope="module")
def hostile_server(tiny_settings, tmp_path_factory):
    settings = tiny_settings.replace(data_dir=str(tmp_path_factory.mktemp("hostile-data")))
    env = {"IMSIM_FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S)}
    server = ServerProcess(*server_args(settings), "--allow-network", "127.0.0.1/32", env=env)
    with server, httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
        yield server, client


@pytest.fixture(scope="module")
def hostile_answers(hostile_server):
    """Warm the server up, then send every hostile input once: answers, seconds, memory."""
    server, client = hostile_server
    assert client.post("/libraries", json={"name": "hostile"}).status_code == 201
    for seed in range(3):  # every code path a good request takes, so the baseline includes them
        photo = b64(image_bytes(seed, size=(800, 600), fmt="JPEG"))
        assert client.post(SIMILARITY, json={"img": photo}).status_code == 200
        assert client.post("/libraries/hostile/images", json={"img": b64(image_bytes(seed))}).status_code == 200
        assert client.post("/libraries/hostile/search", json={"text": "a cat"}).status_code == 200
    rounds = [memory(server.process.pid)]
    for _ in range(ROUNDS):
        answers = {}
        for hostile in hostile_cases():
            start = time.monotonic()
            response = client.post(hostile.path, content=hostile.body, headers={"content-type": "application/json"})
            answers[hostile.name] = (response, time.monotonic() - start)
        rounds.append(memory(server.process.pid))
    return answers, rounds


@pytest.mark.parametrize("hostile", hostile_cases(), ids=lambda h: h.name)
def test_hostile_input_is_a_clear_4xx(hostile_answers, hostile):
    answers, _ = hostile_answers
    response, _ = answers[hostile.name]
    assert response.status_code == hostile.status, response.text[:300]
    body = response.json()
    if hostile.status == 200:
        return
    assert body["code"] == hostile.code, body["message"][:300]
    assert isinstance(body["message"], str) and len(body["message"]) < 2000  # never echoes a huge input


def test_memory_stays_bounded_and_the_server_stays_up(hostile_server, hostile_answers):
    server, client = hostile_server
    answers, rounds = hostile_answers
    before, after = rounds[0], rounds[-1]
    grown, peak = after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmRSS"]
    last_round = after["VmRSS"] - rounds[-2]["VmRSS"]
    slowest = max(answers.items(), key=lambda item: item[1][1])
    print(
        f"\n{len(answers)} hostile inputs x {ROUNDS}; RSS (MB) {' -> '.join(str(r['VmRSS'] // MB) for r in rounds)}, "
        f"peak {after['VmHWM'] // MB}; slowest: {slowest[0]} ({slowest[1][1]:.2f} s)"
    )
    assert grown < RSS_GROWTH_BOUND, f"RSS grew by {grown // MB} MB"
    assert last_round < RSS_REPEAT_BOUND, f"RSS grew by {last_round // MB} MB in a repeat of the same inputs (a leak)"
    assert peak < RSS_PEAK_BOUND, f"peak RSS {peak // MB} MB above the warm baseline"
    assert client.get("/ping").status_code == 200
    assert client.post("/image-similarity", json={"img": b64(PNG)}).status_code == 200


# --- a URL that trickles ------------------------------------------------------------------


class TricklingServer:
    """Accepts connections and sends an HTTP answer one byte every ``interval`` seconds."""

    def __init__(self, head: bytes, body: bytes, interval: float = 0.05):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/slow.png"
        self.payload, self.interval = head + body, interval
        self.closed_at: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        conn.recv(65536)
        try:
            for byte in self.payload:
                conn.sendall(bytes([byte]))
                time.sleep(self.interval)
        except OSError:  # the fetcher hung up: what the test wants
            self.closed_at.append(time.monotonic())
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


SLOW_ANSWERS = {
    "body": (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(PNG), PNG),
    "headers": (b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 10_000 + b"\r\n\r\n", PNG),
    "chunk sizes": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"0" * 10_000),
}


@pytest.mark.parametrize("slow_part", SLOW_ANSWERS)
def test_a_trickling_url_is_cut_at_the_fetch_timeout(hostile_server, slow_part):
    """Socket timeouts bound each read; the fetch timeout bounds the whole download."""
    _, client = hostile_server
    trickler = TricklingServer(*SLOW_ANSWERS[slow_part])
    try:
        start = time.monotonic()
        response = client.post("/image-similarity", json={"url": trickler.url})
        elapsed = time.monotonic() - start
    finally:
        trickler.close()
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "url_timeout"
    assert f"{FETCH_TIMEOUT_S:g} s" in response.json()["message"]
    # The payload takes > 500 s to trickle; the answer came after the fetch timeout, well short of that.
    assert FETCH_TIMEOUT_S <= elapsed < REQUEST_TIMEOUT_S


def test_a_prompt_url_is_still_fetched(hostile_server):
    _, client = hostile_server
    files = FileServer({"/ok.png": (200, {"Content-Type": "image/png"}, PNG)})
    try:
        assert client.post("/image-similarity", json={"url": files.base + "/ok.png"}).status_code == 200
    finally:
        files.close()
