"""The short CI version of bench/load_test.py, and overload: refused at once, never queued without bound.

- Load: the server as a separate process (tiny model), 4 clients for 3 s sending the benchmark's mix
  (vectors, pairs, library adds and searches): no 5xx, no dropped connection, and every
  acknowledged add is read back afterwards.
- Crash: SIGKILL in the middle of a burst of adds, restart on the same data folder: no acknowledged
  add is lost.
- Overload: with ``max_inflight_requests`` requests held in flight, further requests are answered 503
  with ``Retry-After`` and the error shape while the held ones still wait; ``/ping`` still answers.

Runtime: ~35 s on 2 cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.common import ServerProcess, server_args
from bench.load_test import crash_test, create_library, image_count, image_pool, missing_adds, run_load
from tests.fakes.images import image_bytes
from tests.fakes.servers import LiveServer

PNG = image_bytes(41)


@pytest.fixture(scope="module")
def images():
    return image_pool(16, (160, 120))


@pytest.fixture
def load_flags(tiny_settings, tmp_path):
    return server_args(tiny_settings.replace(data_dir=str(tmp_path / "data")))


def test_short_load_has_no_5xx_no_dropped_connection_and_keeps_every_add(load_flags, images):
    with ServerProcess(*load_flags) as server:
        create_library(server.url, "load")
        result = asyncio.run(run_load(server.url, clients=4, seconds=3.0, images=images, library="load"))
        missing = missing_adds(server.url, "load", result.acknowledged)
        count = image_count(server.url, "load")
    assert result.requests > 20
    assert result.server_errors == 0, result.statuses
    assert result.dropped == 0
    assert set(result.statuses) == {200}, result.statuses
    assert all(result.latencies[kind] for kind in ("vector", "pair", "add", "search"))
    assert result.acknowledged and missing == []
    assert count == len(result.acknowledged)


def test_sigkill_in_a_burst_of_adds_loses_no_acknowledged_add(load_flags, images):
    crash = crash_test(load_flags, clients=4, images=images, crash_after=10)
    assert crash.acknowledged >= 10
    assert crash.lost == []
    # adds cut by the kill may or may not have been written; nothing else may appear
    assert crash.acknowledged <= crash.count_after_restart <= crash.acknowledged + crash.in_flight_at_kill


# --- overload ------------------------------------------------------------------------------


class GateServer:
    """Serves a PNG to every GET, but only once ``open()`` is called; counts requests waiting."""

    def __init__(self):
        self.gate = threading.Event()
        self.waiting = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.waiting += 1
                outer.gate.wait(timeout=60)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/held.png"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.waiting < count:
            assert time.monotonic() < deadline, f"{self.waiting} requests reached the gate, not {count}"
            time.sleep(0.02)

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


MAX_IN_FLIGHT = 3


@pytest.fixture
def busy_server(tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(
        max_inflight_requests=MAX_IN_FLIGHT, fetch_allow_networks=("127.0.0.1/32",), data_dir=str(tmp_path)
    )
    gate = GateServer()
    try:
        with LiveServer.start(settings, tiny_engine) as live:
            yield live, gate
    finally:
        gate.close()


def post(url: str, path: str, body: dict) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as http:
        return http.post(path, json=body)


def test_requests_over_the_in_flight_limit_are_refused_at_once_with_retry_after(busy_server):
    live, gate = busy_server
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        held = [pool.submit(post, live.url, "/image-similarity", {"url": gate.url}) for _ in range(MAX_IN_FLIGHT)]
        gate.wait_for(MAX_IN_FLIGHT)  # the server now holds MAX_IN_FLIGHT requests

        refused = [
            live.post("/image-similarity", {"text": "one too many"}),
            live.post("/libraries", {"name": "busy"}),
            live.client.get("/libraries"),
        ]
        ping = live.client.get("/ping")
        answered_while_held = not any(future.done() for future in held)

        gate.gate.set()
        released = [future.result(timeout=60) for future in held]

    for response in refused:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "overloaded"
        assert "busy" in response.json()["message"]
    assert ping.status_code == 200  # the health check is never refused
    assert answered_while_held  # refused at once, not queued behind the held requests
    assert [response.status_code for response in released] == [200] * MAX_IN_FLIGHT
    # the slots are free again
    assert live.post("/image-similarity", {"text": "now there is room"}).status_code == 200
    assert live.post("/libraries", {"name": "busy"}).status_code == 201
