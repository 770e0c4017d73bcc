"""Engines turn prepared images and texts into unit-length vectors.

An engine knows nothing of HTTP, URLs or JSON: it takes uint8 images already cropped to the
model's input size (see ``runtime.transforms``) and plain strings.

- ``torch``: OpenCLIP in PyTorch (the reference, and the GPU path).
- ``onnx``: ONNX Runtime on the CPU, from graphs exported from the same weights (no torch import).
- ``sagemaker``: a SageMaker endpoint computes the vectors (the light front function).
- ``auto`` (default): ``onnx`` when the model folder holds exported graphs, else ``torch``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from runtime.settings import Settings

ENGINES = ("auto", "torch", "onnx", "sagemaker")


class Engine(Protocol):
    model_version: str
    image_size: int
    dimension: int

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """N x size x size x 3 uint8 -> N x dimension float32, L2-normalised."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> N x dimension float32, L2-normalised."""
        ...


def load_engine(settings: Settings) -> Engine:
    """The configured engine, wrapped in a micro-batcher unless that is switched off."""
    engine = _load(settings)
    if settings.micro_batching and settings.engine != "sagemaker":
        from runtime.batching import MicroBatcher

        return MicroBatcher(engine, max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms)
    return engine


def _load(settings: Settings) -> Engine:
    from runtime.engines.onnx_engine import has_onnx_graphs

    kind = settings.engine
    if kind not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {kind!r}")
    if kind == "auto":
        kind = "onnx" if has_onnx_graphs(settings.model_dir) else "torch"
    if kind == "sagemaker":
        from runtime.engines.sagemaker_engine import SageMakerEngine

        return SageMakerEngine(settings)
    if kind == "onnx":
        from runtime.engines.onnx_engine import OnnxEngine

        folder = settings.model_dir if has_onnx_graphs(settings.model_dir) else _export_on_demand(settings)
        return OnnxEngine.load(Path(folder), model_version=settings.model_version, precision=settings.onnx_precision)
    from runtime.engines.torch_engine import TorchEngine

    return TorchEngine.load(settings)


def _export_on_demand(settings: Settings) -> Path:
    """Locally, without a baked folder: export the graphs once into a cache folder and reuse them."""
    from runtime.engines.onnx_engine import has_onnx_graphs
    from runtime.engines.onnx_export import export_onnx
    from runtime.engines.torch_engine import TorchEngine
    from runtime.manifest import write_manifest

    folder = Path(settings.data_dir) / "onnx-cache" / settings.cache_key()
    if not has_onnx_graphs(folder):
        engine = TorchEngine.load(settings.replace(device="cpu"))
        export_onnx(engine, folder, int8=settings.onnx_precision == "int8")
        write_manifest(folder, settings, engine)
    return folder


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
