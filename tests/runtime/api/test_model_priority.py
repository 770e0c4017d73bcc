"""Through the real HTTP server: a search waits for the forward pass in progress, not for the batch adds
queued ahead of it (issue 21: 8 clients adding held a text search 10.6 s at the median)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from runtime.engines.batching import MicroBatcher
from runtime.engines.priority import BATCH, INTERACTIVE
from tests.fakes.engines import TurnTakingEngine
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer
from tests.runtime.engines.test_priority import wait_until

QUEUED_ADDS = 4


def batch_add(url: str, first_seed: int) -> httpx.Response:
    images = [{"img": b64(image_bytes(first_seed + n))} for n in range(32)]
    return httpx.post(f"{url}/libraries/shared/images", json={"images": images, "dedup": False}, timeout=120)


@pytest.mark.slow  # a server and five batch adds of 32 images
def test_a_search_is_answered_before_the_batch_adds_queued_ahead_of_it(tiny_settings, tiny_engine, tmp_path):
    held = TurnTakingEngine(tiny_engine.engine)
    batcher = MicroBatcher(held)
    settings = tiny_settings.replace(data_dir=str(tmp_path / "data"))
    with LiveServer.start(settings, batcher) as server, ThreadPoolExecutor(QUEUED_ADDS + 2) as clients:
        assert server.post("/libraries", {"name": "shared"}).status_code == 201
        in_progress = clients.submit(batch_add, server.url, 0)
        held.wait_for_arrivals(1)  # the model is busy with the first batch add
        queued = [clients.submit(batch_add, server.url, 100 * (n + 1)) for n in range(QUEUED_ADDS)]
        wait_until(lambda: batcher.queued(BATCH) == QUEUED_ADDS)
        search = clients.submit(server.post, "/libraries/shared/search", {"text": "a red square", "top_k": 3})
        wait_until(lambda: batcher.queued(INTERACTIVE) == 1)

        held.give_turns(2)  # the pass in progress, and the next one
        answer = search.result(timeout=60)
        assert answer.status_code == 200, answer.text
        assert not any(add.done() for add in queued)  # answered while every add queued before it still waited
        held.give_turns(100)
        assert in_progress.result(timeout=60).status_code == 200
        for add in queued:
            assert [item["status"] for item in add.result(timeout=60).json()["results"]] == [1] * 32
    assert held.arrived[1] == ["a red square"]
