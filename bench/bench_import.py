"""Bulk import: images/s of a local import from a folder, against the engine's own batch throughput.

    .venv/bin/python bench/bench_import.py            # 2,000 JPEGs of 1024x768, real-size ViT-B-32 (random weights)
    .venv/bin/python bench/bench_import.py --smoke    # tiny model, 64 small JPEGs, seconds (CI)
    .venv/bin/python bench/bench_import.py --images 100

The baseline, measured in the same run on the same engine, before and after the import (the better
of the two): forward passes of full batches (``import_batch`` images, already decoded and prepared),
back to back: the most the engine can do.
The import does everything else too (list, read, decode, hash, write to the store, record progress),
with fetch and decode in parallel with inference. Target: the ratio import / engine at least 0.85.
The pictures are written once into .bench-cache/import-jpegs-<n>/ and reused. Dedup is off, so
every picture is embedded and written (the library starts empty each run).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import CACHE, model_settings, parser, print_table

FULL_IMAGES, FULL_SIZE = 2000, (1024, 768)
SMOKE_IMAGES, SMOKE_SIZE = 64, (160, 120)


def write_pictures(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """Distinct photo-like JPEGs (smooth gradients and blocks, quality 90), written once."""
    from tests.fakes.images import image_bytes

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        path = folder / f"{n // 100:02d}" / f"img{n:05d}.jpg"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(image_bytes(n, size=size, fmt="JPEG", quality=90))
    return folder


def engine_throughput(engine, batch: int, seconds: float) -> float:
    """Images/s of back-to-back forward passes of full batches (prepared pixels, no I/O)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(batch, engine.image_size, engine.image_size, 3), dtype=np.uint8)
    engine.encode_images(pixels)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 3 * batch:
        engine.encode_images(pixels)
        done += batch
    return done / (time.perf_counter() - start)


def import_throughput(settings, engine, folder: Path) -> tuple[float, dict]:
    from runtime.embedder import Embedder
    from runtime.libraries.imports.jobs import FileJobs, ImportJob, new_import_id
    from runtime.libraries.imports.runner import ImportRunner
    from runtime.libraries.local import LocalStore

    store = LocalStore(settings, engine.dimension)
    try:
        store.create_library("bench", engine.model_version)
        jobs = FileJobs(settings.data_dir)
        job = jobs.save(
            ImportJob(new_import_id(), "bench", {"folder": str(folder)}, dedup=False, batch_size=settings.import_batch)
        )
        start = time.perf_counter()
        job = ImportRunner(Embedder(settings, engine), store, jobs).run(job)
        seconds = time.perf_counter() - start
    finally:
        store.close()
    if job.status != "succeeded" or job.counts["failed"]:
        raise RuntimeError(f"the import did not succeed: {job}")
    return job.counts["added"] / seconds, job.counts


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--images", type=int, help=f"how many pictures (default {FULL_IMAGES}; smoke {SMOKE_IMAGES})")
    cli.add_argument("--device", default="auto", help="torch's device: auto (CUDA when present), cpu, cuda")
    args = cli.parse_args()
    count = args.images or (SMOKE_IMAGES if args.smoke else FULL_IMAGES)
    size = SMOKE_SIZE if args.smoke else FULL_SIZE
    settings = model_settings(args.smoke).replace(device=args.device, data_dir=tempfile.mkdtemp(prefix="bench-import-"))
    folder = write_pictures(CACHE / f"import-jpegs-{size[0]}x{size[1]}-{count}", count, size)

    from runtime.engines import load_engine

    engine = load_engine(settings)  # with the micro-batcher, as the server runs it
    seconds = 2 if args.smoke else 20
    before = engine_throughput(engine, settings.import_batch, seconds)
    import_rate, counts = import_throughput(settings, engine, folder)
    # Measured on both sides of the import, and the better of the two kept, so the ratio is not
    # flattered by a machine that got busier during the import.
    engine_rate = max(before, engine_throughput(engine, settings.import_batch, seconds))
    title = (
        f"Bulk import ({settings.model_version}, {count} JPEGs {size[0]}x{size[1]}, batches of {settings.import_batch})"
    )
    print_table(
        title,
        ["path", "images/s", "ratio to the engine"],
        [
            ["engine: forward passes only", engine_rate, "1.00x"],
            ["local import from a folder", import_rate, f"{import_rate / engine_rate:.2f}x"],
        ],
    )
    print(f"added {counts['added']} of {count}; target ratio >= 0.85")


if __name__ == "__main__":
    main()
