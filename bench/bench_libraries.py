"""Benchmark of the embedded library store: exact search, each filter operator, and adds with dedup,
at 10k and 100k images.

Baseline, measured in the same run over the same matrix: NumPy brute force (one matrix-vector product
and a top-k selection), the floor any exact search pays. The store's extra cost is its lock, the
result objects and, for adds, the synchronous SQLite commit. Filtered searches are compared with the
store's own unfiltered search: a filter costs the metadata checks of the rows walked (best first) until
top_k pass, so a filter that few images pass costs more.

    python bench/bench_libraries.py            # 10,000 and 100,000 images (a minute or two)
    python bench/bench_libraries.py --smoke    # seconds; CI runs this

The vectors are random unit vectors of the model's dimension (512): search cost does not depend on
what the vectors mean, and the model's own cost is measured by the similarity benchmarks.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import p50, p95, parser, print_table
from runtime.libraries.local import LocalStore
from runtime.libraries.store import Dedup, NewImage
from runtime.settings import Settings

DIMENSION = 512
VERSION = "bench/random-vectors"
LOAD_CHUNK = 5000


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def timings_ms(run: Callable[[np.ndarray], object], queries: np.ndarray) -> list[float]:
    run(queries[0])  # warm up
    times = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        times.append((time.perf_counter() - started) * 1000)
    return times


def numpy_top10(matrix: np.ndarray) -> Callable[[np.ndarray], object]:
    def run(query: np.ndarray) -> object:
        scores = matrix @ query
        best = np.argpartition(-scores, 9)[:10]
        return best[np.argsort(-scores[best])]

    return run


def numpy_best(matrix: np.ndarray) -> Callable[[np.ndarray], object]:
    return lambda query: int(np.argmax(matrix @ query))


def adder(store: LocalStore) -> Callable[[np.ndarray], object]:
    """Adds each vector as a new image with dedup on (random vectors are never near-duplicates)."""
    numbers = iter(range(10**9))

    def add(vector: np.ndarray) -> object:
        image_id = f"new-{next(numbers)}"
        return store.add_image("bench", vector, model_version=VERSION, image_id=image_id, dedup=Dedup(0.97))

    return add


COLORS = ["red", "blue", "green", "black", "white", "grey", "pink", "brown", "gold", "teal"]

# One filter per operator, with the share of images it keeps (the metadata of ``metadata_of``).
FILTERS = [
    ("$eq (1 in 10)", {"group": 3}),
    ("$ne (9 in 10)", {"group": {"$ne": 3}}),
    ("$gt (1 in 10)", {"price": {"$gt": 899}}),
    ("$gte (1 in 10)", {"price": {"$gte": 900}}),
    ("$lt (1 in 10)", {"price": {"$lt": 100}}),
    ("$lte (1 in 10)", {"price": {"$lte": 99}}),
    ("$in (2 in 10)", {"color": {"$in": ["red", "blue"]}}),
    ("$nin (8 in 10)", {"color": {"$nin": ["red", "blue"]}}),
    ("$exists (1 in 10)", {"promo": {"$exists": True}}),
    ("$and (1 in 20)", {"$and": [{"group": 3}, {"price": {"$lt": 500}}]}),
    ("$or (2 in 10)", {"$or": [{"group": 3}, {"tags": "sale"}]}),
    ("list element $eq (1 in 10)", {"tags": "sale"}),
    ("rare: $lt (1 in 1,000)", {"price": {"$lt": 1}}),
]


def metadata_of(n: int) -> dict:
    metadata = {
        "n": n,
        "group": n % 10,
        "price": (n * 7919) % 1000,
        "color": COLORS[(n // 10) % 10],
        "tags": ["sale" if n % 10 == 4 else "new", "catalog"],
    }
    if n % 10 == 7:
        metadata["promo"] = "summer"
    return metadata


def load(store: LocalStore, name: str, vectors: np.ndarray, offset: int) -> None:
    for start in range(0, len(vectors), LOAD_CHUNK):
        chunk = vectors[start : start + LOAD_CHUNK]
        numbers = range(offset + start, offset + start + len(chunk))
        images = [NewImage(v, f"img{n}", metadata_of(n)) for n, v in zip(numbers, chunk, strict=True)]
        store.add_images(name, images, model_version=VERSION, dedup=None)


def run(sizes: list[int], queries: int, adds: int) -> tuple[list[list], list[list]]:
    rows, filter_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=folder, max_images_per_library=max(sizes) + adds * len(sizes))
        store = LocalStore(settings, DIMENSION)
        store.create_library("bench", VERSION)
        vectors = unit_vectors(max(sizes), seed=1)
        add = adder(store)
        loaded = 0
        for size in sizes:
            load(store, "bench", vectors[loaded:size], loaded)
            loaded = size
            matrix = vectors[:size].copy()
            probe = unit_vectors(queries, seed=size)

            def search(query: np.ndarray, **kwargs) -> object:
                return store.search("bench", query, model_version=VERSION, top_k=10, **kwargs)

            baseline = timings_ms(numpy_top10(matrix), probe)
            exact = timings_ms(search, probe)
            rows.append(row(f"search top-10, {size:,} images", exact, baseline))
            for label, conditions in FILTERS:
                filtered = timings_ms(lambda q, c=conditions: search(q, filter=c), probe)
                filter_rows.append(row(f"{label}, {size:,} images", filtered, exact))

            fresh = unit_vectors(adds, seed=size + 7)
            floor = timings_ms(numpy_best(matrix), fresh)
            added = timings_ms(add, fresh)
            rows.append(row(f"add with dedup, {size:,} images", added, floor, rate=True))
        store.close()
        started = time.perf_counter()
        reopened = LocalStore(settings, DIMENSION)
        count = reopened.get_library("bench").image_count
        rows.append([f"open data dir, {count:,} images", (time.perf_counter() - started) * 1000, "", "", "", ""])
        reopened.close()
    return rows, filter_rows


def row(case: str, times: list[float], baseline: list[float], rate: bool = False) -> list:
    per_second = f"{1000 / statistics.mean(times):,.0f}/s" if rate else ""
    return [case, p50(times), p95(times), p50(baseline), f"{p50(times) / p50(baseline):.2f}x", per_second]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.smoke:
        rows, filter_rows = run([1_000, 3_000], queries=20, adds=20)
    else:
        rows, filter_rows = run([10_000, 100_000], queries=200, adds=200)
    header = ["case", "p50 ms", "p95 ms", "numpy p50 ms", "ratio", "throughput"]
    print_table("Library store (embedded): exact search and adds, against NumPy brute force", header, rows)
    header = ["filter, top-10", "p50 ms", "p95 ms", "unfiltered p50 ms", "ratio", ""]
    print_table("Filtered search (embedded store), against unfiltered search", header, filter_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
