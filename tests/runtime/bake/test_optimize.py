"""Graphs are optimised once at bake time and load without re-optimising, with the same vectors."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.bake.export import export_onnx
from runtime.bake.optimize import optimize_graphs
from runtime.engines.model_folder import IMAGE_GRAPH, TEXT_GRAPH, weights_data_file
from runtime.engines.onnx_engine import OnnxEngine
from runtime.engines.torch_engine import TorchEngine

pytestmark = pytest.mark.slow


def test_optimised_graphs_are_smaller_and_give_the_same_vectors(tiny_settings, tmp_path):
    torch_engine = TorchEngine.load(tiny_settings)
    exported = tmp_path / "exported"
    export_onnx(torch_engine, exported, int8=False)
    optimized = tmp_path / "optimized"
    shutil.copytree(exported, optimized)

    tokens = np.asarray(torch_engine.tokenizer(["a photo of a cat", "a diagram"]))
    assert optimize_graphs(optimized, torch_engine.image_size, ("fp32",), tokens=tokens) == ort.__version__

    for graph in (IMAGE_GRAPH, TEXT_GRAPH):
        before = len(onnx.load(str(exported / graph)).graph.node)
        after = len(onnx.load(str(optimized / graph)).graph.node)
        assert after < before, graph  # fusions happened
        # The weights live beside the graph, for ONNX Runtime to map into memory at load.
        weights = optimized / weights_data_file(graph)
        assert weights.stat().st_size > 10 * (optimized / graph).stat().st_size, graph
    spec, version = torch_engine.spec, torch_engine.model_version
    plain = OnnxEngine.load(exported, model_version=version, spec=spec)
    fast = OnnxEngine.from_files(
        optimized / IMAGE_GRAPH,
        optimized / TEXT_GRAPH,
        exported / "tokenizer.json",
        spec=spec,
        model_version=version,
        optimized=True,
    )
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, spec.size, spec.size, 3), dtype=np.uint8)
    assert np.allclose(plain.encode_images(pixels), fast.encode_images(pixels), atol=1e-5)
    texts = ["a photo of a cat", "数字 123"]
    assert np.allclose(plain.encode_texts(texts), fast.encode_texts(texts), atol=1e-5)
