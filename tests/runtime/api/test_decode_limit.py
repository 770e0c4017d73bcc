"""Every route that decodes a request's images decodes at most ``decode_threads_per_request`` of them at
once, through a real loopback server and the real decoder (wrapped to count the decodes in flight)."""

from __future__ import annotations

import threading
import time

import pytest

import runtime.embedder
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer

LIMIT = 2
IMAGES = 8


@pytest.fixture
def limited(tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(data_dir=str(tmp_path / "data"), decode_threads_per_request=LIMIT)
    with LiveServer.start(settings, tiny_engine) as live:
        yield live


@pytest.fixture
def most_in_flight(monkeypatch) -> list[int]:
    """``[n]``: the most decodes that were running at once. Each decode is held a moment so that
    decodes free to overlap do overlap."""
    lock = threading.Lock()
    running = [0]
    most = [0]

    def counting(decode):
        def counted(*args, **kwargs):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                time.sleep(0.05)
                return decode(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1

        return counted

    # the model's input alone (similarity), or with the perceptual hash and size (a library add)
    for name in ("image_to_pixels", "image_to_library_pixels"):
        monkeypatch.setattr(runtime.embedder, name, counting(getattr(runtime.embedder, name)))
    return most


def images_of() -> list[dict]:
    return [{"img": b64(image_bytes(seed))} for seed in range(IMAGES)]


def test_similarity_inputs_decode_a_few_at_a_time(limited, most_in_flight):
    answer = limited.post("/image-similarity", {"inputs": images_of()})
    assert answer.status_code == 200, answer.text
    assert 1 <= most_in_flight[0] <= LIMIT


def test_a_library_batch_add_decodes_a_few_at_a_time(limited, most_in_flight):
    limited.post("/libraries", {"name": "limited"})
    unreadable = [{"img": "not base64!"}, {"img": b64(b"plain text, not a picture")}]
    answer = limited.post("/libraries/limited/images", {"images": [*images_of(), *unreadable], "dedup": False})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == [1] * IMAGES + [-1, -1]
    assert [result.get("code") for result in results[IMAGES:]] == ["invalid_base64", "not_an_image"]
    assert 1 <= most_in_flight[0] <= LIMIT
