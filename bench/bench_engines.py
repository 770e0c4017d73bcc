"""Engines: latency at batch 1 and 8, and cosine against torch eager fp32 on the same inputs.

    .venv/bin/python bench/bench_engines.py            # real-size ViT-B-32, random weights
    .venv/bin/python bench/bench_engines.py --smoke    # tiny model, seconds (CI)

The baseline is torch eager fp32, measured in the same run, and so is the machine's limit
(bench/limits.py): image throughput is also printed as a fraction of the fp32 ceiling. ONNX graphs
are exported once into .bench-cache/ (about 35 s for ViT-B-32) and reused by later runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import model_settings, p50, parser, print_table, timed
from bench.limits import measure

TEXTS = ["a photo of a cat sitting on a red sofa in the afternoon sun"]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--device", default="auto", help="torch's device: auto (CUDA when present), cpu, cuda")
    args = cli.parse_args()
    repeat = 3 if args.smoke else 10
    settings = model_settings(args.smoke).replace(device=args.device)

    from runtime.engines import _export_on_demand
    from runtime.engines.onnx_engine import OnnxEngine
    from runtime.engines.torch_engine import TorchEngine

    torch_engine = TorchEngine.load(settings)
    limit = measure(torch_engine, seconds=0.3 if args.smoke else 2.0)
    if torch_engine.device != "cpu":
        print(f"torch on {torch_engine.device} (fp16: {torch_engine.half}); ONNX Runtime on the CPU")
    folder = _export_on_demand(settings.replace(onnx_precision="int8"))
    engines = {"torch eager fp32": torch_engine}
    for precision in ("fp32", "int8"):
        engines[f"onnx {precision}"] = OnnxEngine.load(
            folder, model_version=settings.model_version, precision=precision, spec=torch_engine.spec
        )

    size = torch_engine.image_size
    rng = np.random.default_rng(0)
    batches = {n: rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8) for n in (1, 8)}
    reference = {n: torch_engine.encode_images(batch) for n, batch in batches.items()}
    reference_text = torch_engine.encode_texts(TEXTS)

    rows, baseline = [], {}
    for name, engine in engines.items():
        for n, batch in batches.items():
            ms = p50(timed(lambda engine=engine, batch=batch: engine.encode_images(batch), repeat))
            baseline.setdefault(n, ms)
            cosine = float(np.min(np.sum(engine.encode_images(batch) * reference[n], axis=1)))
            fraction = limit.fraction(1000 * n / ms)
            rows.append([name, f"image x{n}", ms, ms / n, f"{baseline[n] / ms:.2f}x", fraction, f"{cosine:.6f}"])
        ms = p50(timed(lambda engine=engine: engine.encode_texts(TEXTS), repeat))
        baseline.setdefault("text", ms)
        cosine = float(np.min(np.sum(engine.encode_texts(TEXTS) * reference_text, axis=1)))
        rows.append([name, "text x1", ms, ms, f"{baseline['text'] / ms:.2f}x", "", f"{cosine:.6f}"])
    print_table(
        f"Engines ({settings.model_version}, {size} px)",
        ["engine", "input", "ms/batch p50", "ms/item", "speed vs torch", "of fp32 limit", "min cosine vs torch"],
        rows,
    )
    print(limit.describe())


if __name__ == "__main__":
    main()
