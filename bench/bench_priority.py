"""Text-search latency with the server idle and under clients doing batch adds.

    .venv/bin/python bench/bench_priority.py [--adders 8] [--seconds 60] [--smoke]

One client sends text searches back to back, first alone (the baseline, measured in the same run), then
while ``--adders`` clients send batch adds of 32 images (640x480 JPEGs, base64) back to back. A search
needs one forward pass of one text; the micro-batcher gives it the model before the batch adds' passes
queued ahead of it (runtime/engines/batching.py), so under load it waits for the pass in progress only.
The images the adders got added per second are printed too: batch work still gets its passes.

The model is ViT-B-32 at full size with random weights (``python -m runtime serve --smoke``);
``--smoke`` here means the tiny test model and a seconds-long run.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import ServerProcess, model_settings, p50, p95, parser, print_table, server_args
from tests.fakes.images import b64, image_bytes

LIBRARY = "bench"
BATCH = 32
SEARCH = {"text": "a red square", "top_k": 5}


def searches_ms(url: str, stop: threading.Event, count: int | None = None) -> list[float]:
    """Text searches back to back, until ``stop`` is set (or ``count`` are done): milliseconds each."""
    samples: list[float] = []
    with httpx.Client(base_url=url, timeout=600) as http:
        while not stop.is_set() and (count is None or len(samples) < count):
            start = time.perf_counter()
            response = http.post(f"/libraries/{LIBRARY}/search", json=SEARCH)
            response.raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def adder(url: str, images: list[str], stop: threading.Event, added: list[int]) -> None:
    """Batch adds of ``BATCH`` images back to back until ``stop`` is set; counts the images added."""
    with httpx.Client(base_url=url, timeout=600) as http:
        while not stop.is_set():
            body = {"images": [{"img": image} for image in images], "dedup": False}
            response = http.post(f"/libraries/{LIBRARY}/images", json=body)
            response.raise_for_status()
            added.append(sum(result["status"] == 1 for result in response.json()["results"]))


def under_load(url: str, images: list[str], adders: int, seconds: float) -> tuple[list[float], float]:
    """Search latencies while ``adders`` clients add, and the images added per second meanwhile."""
    stop, added = threading.Event(), []
    threads = [threading.Thread(target=adder, args=(url, images, stop, added)) for _ in range(adders)]
    for thread in threads:
        thread.start()
    time.sleep(min(5.0, seconds / 4))  # the adds' queue fills first
    timer = threading.Timer(seconds, stop.set)
    started = time.perf_counter()
    timer.start()
    samples = searches_ms(url, stop)
    elapsed = time.perf_counter() - started
    for thread in threads:
        thread.join()
    return samples, sum(added) / elapsed


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--adders", type=int, default=8)
    cli.add_argument("--seconds", type=float, default=60.0)
    args = cli.parse_args()
    seconds = 3.0 if args.smoke else args.seconds
    adders = 2 if args.smoke else args.adders
    settings = model_settings(args.smoke).replace(data_dir=tempfile.mkdtemp(prefix="priority-data-"))
    size = (160, 120) if args.smoke else (640, 480)
    images = [b64(image_bytes(seed, size=size, fmt="JPEG", quality=85)) for seed in range(BATCH)]
    with ServerProcess(*server_args(settings)) as server:
        httpx.post(f"{server.url}/libraries", json={"name": LIBRARY}, timeout=60).raise_for_status()
        never = threading.Event()
        searches_ms(server.url, never, count=3)  # warm up
        idle = searches_ms(server.url, never, count=10 if args.smoke else 30)
        loaded, images_per_s = under_load(server.url, images, adders, seconds)
    rows = [
        ["idle (baseline)", 0, len(idle), p50(idle), p95(idle), "1.00x", "-"],
        [f"{adders} clients adding", adders, len(loaded), p50(loaded), p95(loaded), f"{p50(loaded) / p50(idle):.2f}x"]
        + [f"{images_per_s:.1f}"],
    ]
    print_table(
        f"Text search under batch adds ({settings.model_version}, {BATCH} images a request, {seconds:g} s)",
        ["phase", "adders", "searches", "p50 ms", "p95 ms", "p50 vs idle", "images added/s"],
        rows,
    )


if __name__ == "__main__":
    main()
