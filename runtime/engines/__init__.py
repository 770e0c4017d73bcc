"""Engines turn prepared images and texts into unit-length vectors.

An engine knows nothing of HTTP, URLs or JSON: it takes uint8 images already cropped to the
model's input size (see ``runtime.transforms``) and plain strings.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from runtime.settings import Settings


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
    if settings.engine == "torch":
        from runtime.engines.torch_engine import TorchEngine

        return TorchEngine.load(settings)
    if settings.engine == "sagemaker":
        from runtime.engines.sagemaker_engine import SageMakerEngine

        return SageMakerEngine(settings)
    raise ValueError(f"engine must be 'torch' or 'sagemaker', not {settings.engine!r}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
