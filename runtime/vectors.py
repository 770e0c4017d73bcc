"""Vector arithmetic shared by engines and stores: unit length, and the API's one similarity scale."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Vectors = NDArray[np.float32]
"""N x dimension float32, one vector a row."""


def l2_normalize(vectors: ArrayLike) -> Vectors:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def scores_of(cosines: ArrayLike) -> NDArray[Any]:
    """The API's one similarity scale: (1 + cosine) / 2, clipped to [0, 1]."""
    return np.clip((1.0 + np.asarray(cosines, dtype=np.float32)) / 2.0, 0.0, 1.0)
