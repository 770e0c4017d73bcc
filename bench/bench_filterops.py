"""Benchmark of count, delete by filter and ``order_by`` on the embedded store (each reads the whole library).

Baselines, measured in the same run on the same library: an unfiltered page of the id-order listing
(what a caller paid before to walk the library, per 1,000 images) for count and ``order_by``, and
deleting the same images one ``delete_image`` call at a time for delete by filter (each call one
SQLite commit and one copy of the matrix). On S3 Vectors the cost is calls, not CPU: a full read is
ceil(images / 1,000) ListVectors calls at least, a delete ceil(deleted / 500) DeleteVectors calls on
the images and as many on their file keys (docs/libraries.md).

    python bench/bench_filterops.py            # 20,000 images (about a minute)
    python bench/bench_filterops.py --smoke    # 2,000 images, seconds
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import parser
from runtime.libraries.local import LocalStore
from runtime.libraries.store import NewImage
from runtime.settings import Settings

DIMENSION = 512
VERSION = "bench/random-vectors"
FILTER = {"album": {"$startsWith": "2019/"}, "rank": {"$gte": 0}}


def images(count: int, seed: int) -> list[NewImage]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    years = ("2019", "2020", "2021")
    return [
        NewImage(
            vectors[n],
            f"img-{n:06d}",
            {"album": f"{years[n % 3]}/album-{n % 50}", "date": f"20{n % 30:02d}-01-01", "rank": n},
        )
        for n in range(count)
    ]


def filled(store: LocalStore, name: str, count: int) -> None:
    store.create_library(name, VERSION)
    made = images(count, 1)
    for start in range(0, count, 5000):
        store.add_images(name, made[start : start + 5000], model_version=VERSION, dedup_threshold=None)


def ms(function, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    arguments = parser(__doc__ or "").parse_args()
    count = 2000 if arguments.smoke else 20_000
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Settings(data_dir=folder, max_images_per_library=10**6), DIMENSION)
        filled(store, "lib", count)
        page = ms(lambda: store.list_images("lib", limit=1000))
        counted = ms(lambda: store.count_images("lib", FILTER))
        ordered = ms(lambda: store.list_images("lib", limit=1000, order_by="date", order="desc"))
        doomed = store.count_images("lib", FILTER)
        filled(store, "one_by_one", count)
        ids = [f"img-{n:06d}" for n in range(0, count, 3)]
        start = time.perf_counter()
        for image_id in ids:
            store.delete_image("one_by_one", image_id)
        singles = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        store.delete_images("lib", FILTER)
        bulk = (time.perf_counter() - start) * 1000
        store.close()
    print(f"{count:,} images, {doomed:,} match {FILTER}")
    print("| operation | ms | vs baseline |\n|---|---|---|")
    print(f"| id-order page of 1,000 (baseline) | {page:.1f} | 1.00x |")
    print(f"| count with the filter | {counted:.1f} | {counted / page:.2f}x |")
    print(f"| order_by page of 1,000 (desc) | {ordered:.1f} | {ordered / page:.2f}x |")
    print(f"| {len(ids):,} delete_image calls (baseline) | {singles:.0f} | 1.00x |")
    print(f"| delete by filter of {doomed:,} | {bulk:.0f} | {bulk / singles:.3f}x |")


if __name__ == "__main__":
    main()
