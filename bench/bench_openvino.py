"""OpenVINO against ONNX Runtime on the same exported graphs, on the CPU.

    .venv/bin/python bench/bench_openvino.py            # real-size ViT-B-32, random weights
    .venv/bin/python bench/bench_openvino.py --smoke    # tiny model, seconds (CI)

Both runtimes load the image graph the bake step exports (fp32) and run the same batches; the table
gives ms per batch, OpenVINO's speed as a ratio of ONNX Runtime's (the baseline, measured in the same
run), the fraction of the machine's limit (bench/limits.py), and the lowest cosine between the two.
The project adopts OpenVINO only where it is at least ``ADOPT_AT`` times faster at equal cosine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import model_settings, p50, parser, print_table, timed
from bench.limits import measure

ADOPT_AT = 1.15


def main() -> None:
    args = parser(__doc__).parse_args()
    repeat = 3 if args.smoke else 10
    settings = model_settings(args.smoke)
    import openvino as ov

    from runtime.engines import _export_on_demand
    from runtime.engines.model_folder import IMAGE_GRAPH
    from runtime.engines.onnx_engine import OnnxEngine
    from runtime.engines.torch_engine import TorchEngine
    from runtime.inputs.images import normalize

    torch_engine = TorchEngine.load(settings)
    limit = measure(torch_engine, seconds=0.3 if args.smoke else 2.0)
    folder = _export_on_demand(settings)
    onnx = OnnxEngine.load(folder, model_version=settings.model_version, spec=torch_engine.spec)
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": os.cpu_count() or 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(str(folder / IMAGE_GRAPH), "CPU", config)

    size = torch_engine.image_size
    rng = np.random.default_rng(0)
    rows = []
    for n in (1, 8):
        batch = normalize(rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8), torch_engine.spec)
        ort_ms = p50(timed(lambda batch=batch: onnx.image_session.run(None, {"pixels": batch}), repeat))
        ov_ms = p50(timed(lambda batch=batch: compiled(batch), repeat))
        a = onnx.image_session.run(None, {"pixels": batch})[0]
        b = compiled(batch)[0]
        cosine = float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
        for name, ms in (("onnxruntime", ort_ms), ("openvino", ov_ms)):
            rows.append([name, n, ms, f"{ort_ms / ms:.2f}x", limit.fraction(1000 * n / ms), f"{cosine:.6f}"])
    print_table(
        f"OpenVINO vs ONNX Runtime ({settings.model_version}, image graph fp32, adopt at >= {ADOPT_AT}x)",
        ["runtime", "batch", "ms/batch p50", "speed vs onnxruntime", "of fp32 limit", "min cosine between them"],
        rows,
    )
    print(limit.describe())


if __name__ == "__main__":
    main()
