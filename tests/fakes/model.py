"""A tiny OpenCLIP model with random weights, saved as a checkpoint the runtime loads for real."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TINY_MODEL_NAME = "tiny-test-clip"
TINY_CONFIG = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@dataclass(frozen=True)
class TinyModel:
    name: str
    config: Path
    weights: Path


def build_tiny_checkpoint(folder: Path, seed: int = 0) -> TinyModel:
    import open_clip
    import torch

    config = folder / f"{TINY_MODEL_NAME}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(str(config))
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_MODEL_NAME, pretrained=None)
    weights = folder / "tiny-random.pt"
    torch.save(model.state_dict(), weights)
    return TinyModel(TINY_MODEL_NAME, config, weights)
