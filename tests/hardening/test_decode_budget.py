"""A batch add of 32 photos of 48 MP holds the server's decode memory to ``decode_memory_mb``.

Issue 21: 32 x 48 MP WebPs raised a server's peak resident memory by 1.4 GB against the 1 GB budget:
the budget's estimate for a WebP (8 bytes a pixel) was under half what libwebp and Pillow hold (18).
The server is a fresh process (no memory freed earlier that the decodes could reuse unseen)."""

from __future__ import annotations

import io
import sys

import httpx
import pytest

from bench.common import ServerProcess, server_args
from tests.fakes.images import b64
from tests.hardening.conftest import memory, reset_peak
from tests.runtime.inputs.test_decode_memory import MP48, picture

MB = 1024 * 1024
BUDGET = 1024 * MB  # decode_memory_mb's default
MARGIN = 96 * MB
"""The request itself (a 10 MB body, its JSON and the 32 files' bytes) and the interpreter's own growth."""


def distinct_webps(count: int) -> list[bytes]:
    """``count`` 48 MP WebPs of different content (a file's copies are decoded once)."""
    base = picture(MP48, "RGB")
    files = []
    for number in range(count):
        base.paste((number * 7, 255 - number * 7, number), (0, 0, 256, 256))
        out = io.BytesIO()
        base.save(out, format="WEBP", quality=80, method=0)
        files.append(out.getvalue())
    return files


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_a_batch_of_32_webps_of_48_megapixels_stays_within_the_decode_budget(tiny_settings, tmp_path):
    body = {"images": [{"img": b64(data)} for data in distinct_webps(32)], "dedup": False}
    settings = tiny_settings.replace(data_dir=str(tmp_path / "data"))
    with ServerProcess(*server_args(settings)) as server, httpx.Client(base_url=server.url, timeout=1200) as client:
        assert client.post("/libraries", json={"name": "photos"}).status_code == 201
        before = reset_peak(server.process.pid)
        answer = client.post("/libraries/photos/images", json=body)
        grown = memory(server.process.pid)["VmHWM"] - before
    print(f"32 x 48 MP WebP: the server's peak resident memory grew {grown / MB:.0f} MB")  # a figure for reports
    assert answer.status_code == 200, answer.text
    assert [result["status"] for result in answer.json()["results"]] == [1] * 32
    assert grown <= BUDGET + MARGIN, f"peak resident memory grew {grown / MB:.0f} MB"
