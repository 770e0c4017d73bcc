"""Optimise the ONNX graphs once, at bake time, so that a cold start does not.

ONNX Runtime rewrites a graph (constant folding, fusions of attention, GELU, layer norm...) every time
a session is created: most of the engine's load time at a cold start. The portable level of these
rewrites (``ORT_ENABLE_EXTENDED``; the higher level adds layout changes for the build machine's CPU)
is applied here and saved over each graph; the engine then loads it with optimisations off. The
manifest records the ONNX Runtime version that did it: another version re-optimises at load instead.
Each optimised graph keeps its weights in a file beside it (``model_folder.weights_data_file``),
which ONNX Runtime maps into memory at load instead of copying.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from runtime.engines.model_folder import IMAGE_GRAPH, TEXT_GRAPH, graph_file, weights_data_file


def optimize_graphs(
    folder: Path, image_size: int, precisions: tuple[str, ...] = ("fp32", "int8"), *, tokens: np.ndarray
) -> str:
    """Replace each graph in ``folder`` by its optimised form; returns the ONNX Runtime version.

    ``tokens`` are probe texts put through the model's own tokenizer: token ids outside its vocabulary
    (which differs between the CLIP BPE and an HF tokenizer) would not run through the text graph."""
    import onnxruntime as ort

    probes: dict[str, np.ndarray] = {
        "pixels": np.random.default_rng(0).normal(size=(2, 3, image_size, image_size)).astype(np.float32),
        "tokens": np.asarray(tokens, dtype=np.int64),
    }
    for precision in precisions:
        for graph, input_name in ((IMAGE_GRAPH, "pixels"), (TEXT_GRAPH, "tokens")):
            path = folder / graph_file(graph, precision)
            if path.exists():
                _optimize(path, {input_name: probes[input_name]})
    return ort.__version__


def _optimize(path: Path, probe: dict[str, np.ndarray]) -> None:
    import onnxruntime as ort

    scratch = path.with_suffix(".optimizing.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(scratch)
    # The weights go to the data file the graph keeps (named after the final graph, which refers to it).
    external = "session.optimized_model_external_initializers_"
    options.add_session_config_entry(external + "file_name", weights_data_file(path.name))
    options.add_session_config_entry(external + "min_size_in_bytes", "1024")
    before = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, probe)[0]
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    after = ort.InferenceSession(str(scratch), plain, providers=["CPUExecutionProvider"]).run(None, probe)[0]
    if not np.allclose(before, after, rtol=1e-4, atol=1e-5):
        scratch.unlink()
        raise SystemExit(f"bake: the optimised {path.name} gives other vectors than the graph it came from")
    os.replace(scratch, path)
