"""Export and restore of a library (embedded store), against the least each one must do.

    python bench/bench_export.py            # 10,000 images (about a minute)
    python bench/bench_export.py --smoke    # 500 images, seconds; CI runs this

A library of random unit vectors (512-d) with metadata and hashes, as an add keeps them, is exported
to JSONL (``runtime.libraries.export.export_lines``: what ``GET /libraries/{name}/export`` streams and
the CLI writes) and restored into an empty data directory (``restore``: what ``POST
/libraries/{name}/restore`` and the CLI run). Baselines, measured in the same run:

- export: the same lines written from the same values already in memory (base64 of each vector and
  one ``json.dumps`` a line): what any JSONL export pays, without reading the store;
- restore: ``add_images`` of the same images already parsed, in the restore's batch size: the store's
  own write path (its SQLite commits), without reading the file.

The round trip is checked: every restored vector equals the exported one, byte for byte.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_libraries import DIMENSION, VERSION, metadata_of, unit_vectors
from bench.common import parser, print_table
from runtime.libraries.export import RESTORE_BATCH, export_lines, restore
from runtime.libraries.local import LocalStore
from runtime.libraries.store import NewImage
from runtime.settings import Settings

ROUNDS = 3


def library_images(count: int) -> list[NewImage]:
    vectors = unit_vectors(count, seed=3)
    return [
        NewImage(
            vector,
            f"img{n}",
            metadata_of(n),
            content_hash=f"{n:064x}",
            perceptual_hash=f"{(n * 2654435761) % 2**256:064x}",
            size=(4032, 3024),
        )
        for n, vector in enumerate(vectors)
    ]


def bare_lines(images: list[NewImage]) -> bytes:
    """The export's lines from values in memory: base64 of each vector, one json.dumps a line."""
    lines = []
    for image in images:
        vector = base64.b64encode(np.asarray(image.vector, dtype="<f4").tobytes()).decode("ascii")
        line = {"id": image.id, "metadata": image.metadata, "content_hash": image.content_hash, "vector": vector}
        lines.append(json.dumps(line, separators=(",", ":")) + "\n")
    return "".join(lines).encode()


def add_in_batches(store: LocalStore, images: list[NewImage]) -> None:
    """The images into a new library ``bench``, in the restore's batch size."""
    store.create_library("bench", VERSION)
    for start in range(0, len(images), RESTORE_BATCH):
        store.add_images("bench", images[start : start + RESTORE_BATCH], model_version=VERSION, dedup=None)


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def best_of(rounds: int, run) -> tuple[float, object]:
    results = [timed(run) for _ in range(rounds)]
    return min(seconds for seconds, _ in results), results[-1][1]


def run(count: int) -> list[list]:
    images = library_images(count)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=folder + "/source", max_images_per_library=count)
        source = LocalStore(settings, DIMENSION)
        add_in_batches(source, images)
        export_s, exported = best_of(ROUNDS, lambda: b"".join(export_lines(source, "bench")))
        bare_export_s, _ = best_of(ROUNDS, lambda: bare_lines(images))

        restores, adds = itertools.count(1), itertools.count(1)  # each round writes into an empty data directory

        def restore_once() -> object:
            target = LocalStore(Settings(data_dir=f"{folder}/restored-{next(restores)}"), DIMENSION)
            try:
                return restore(target, exported.splitlines(keepends=True))
            finally:
                target.close()

        def add_once() -> None:
            target = LocalStore(Settings(data_dir=f"{folder}/added-{next(adds)}"), DIMENSION)
            add_in_batches(target, images)
            target.close()

        restore_s, restored = best_of(ROUNDS, restore_once)
        add_s, _ = best_of(ROUNDS, add_once)
        assert restored.counts["added"] == count, restored.counts  # type: ignore[attr-defined]
        source.close()
        check_round_trip(exported, f"{folder}/restored-1")
    megabytes = len(exported) / 1e6
    return [
        ["export (JSONL)", count, export_s, f"{count / export_s:,.0f}", f"{megabytes / export_s:.0f}", bare_export_s,
         f"{export_s / bare_export_s:.2f}x"],
        ["restore", count, restore_s, f"{count / restore_s:,.0f}", f"{megabytes / restore_s:.0f}", add_s,
         f"{restore_s / add_s:.2f}x"],
    ]  # fmt: skip


def check_round_trip(exported: bytes, restored_dir: str) -> None:
    """The restored library, exported again, holds the exported vectors, byte for byte."""
    restored = LocalStore(Settings(data_dir=restored_dir), DIMENSION)
    try:
        again = b"".join(export_lines(restored, "bench"))
    finally:
        restored.close()
    assert vectors_of(exported) == vectors_of(again), "a restored vector differs from the exported one"


def vectors_of(export: bytes) -> list[str]:
    return [json.loads(line)["vector"] for line in export.splitlines() if b'"vector"' in line]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    count = 500 if args.smoke else 10_000
    rows = run(count)
    print_table(
        f"Export and restore (embedded store, {count:,} images of {DIMENSION}-d; best of {ROUNDS})",
        ["operation", "images", "seconds", "images/s", "MB/s", "baseline s", "vs baseline"],
        rows,
    )
    print("round trip: every restored vector equals the exported one, byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
