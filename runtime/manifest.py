"""The ``manifest.json`` of a model folder: what was baked, and how to feed it."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.settings import Settings


def write_manifest(folder: Path, settings: Settings, engine, **extra) -> dict:
    spec = engine.spec
    manifest = {
        "model": settings.model,
        "pretrained": settings.pretrained,
        "model_version": settings.model_version,
        "image_size": spec.size,
        "image_mean": list(spec.mean),
        "image_std": list(spec.std),
        "dimension": engine.dimension,
        **extra,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
