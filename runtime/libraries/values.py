"""Small values every part of the libraries shares: score bounds, vectors, stored JSON, field paths.

``check_score`` bounds a ``threshold`` or ``min_score`` to [0, 1]; ``check_vector`` makes a vector float32
of unit length (a wrong dimension or a zero vector is a bug, not bad input); ``compact_json`` is the one
JSON encoding that metadata is stored in and measured by; ``at`` joins an item's path and a field's name
for error messages (``images[2]`` and ``metadata`` read ``images[2].metadata``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from runtime.errors import BadRequest


def check_score(value: float | None, field: str) -> float | None:
    """A score bound (``threshold``, ``min_score``): between 0 and 1 (NaN is not)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadRequest(f"{field}: must be between 0 and 1", code="invalid_value")
    return value


UNIT_TOLERANCE = 1e-6
"""A norm this close to 1 is unit length: a float32 vector divided by its norm is within a few units
of float32's last place (1.2e-7) of it."""


def check_vector(vector: np.ndarray, dimension: int) -> np.ndarray:
    """The vector as float32 of unit length, so a dot product is the cosine.

    Embeddings arrive normalised; a wrong dimension or a zero vector is a bug, not bad input. A vector
    already of unit length (within float32 rounding, ``UNIT_TOLERANCE``) is kept as it is: dividing it
    by its norm again would change its last bits, and a restored export keeps its vectors byte for byte.
    """
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dimension:
        raise ValueError(f"vector has {vector.shape[0]} dimensions; the store holds {dimension}")
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and not zero")
    if abs(norm - 1.0) <= UNIT_TOLERANCE:
        return vector.copy()  # the store's own, as the division's result would be
    return vector / np.float32(norm)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def writable_as_utf8(value: Any) -> bool:
    """False for what JSON allows and UTF-8 cannot hold: a lone surrogate (``"\\ud800"``) anywhere inside."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


LONE_SURROGATE = "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text; send valid Unicode"


def unwritable_field(value: Any, where: str = "") -> str | None:
    """Where inside ``value`` (a parsed JSON value) the first string UTF-8 cannot hold is, as a field
    path (``images[0].url``; a key is named by the object holding it); None when every string can be
    written. ``where`` names ``value`` itself."""
    pending: list[tuple[str, Any]] = [(where, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str) and not writable_as_utf8(item):
            return path or "request body"
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and not writable_as_utf8(key):
                    return f"{path or 'request body'} (one of its keys)"
            children = [(at(path, str(key)), child) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(f"{path}[{index}]", child) for index, child in enumerate(item)]
        else:
            continue
        pending.extend(reversed(children))  # depth first, in document order
    return None


def at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
