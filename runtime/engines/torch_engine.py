"""The reference engine: OpenCLIP in PyTorch, on CUDA when present, else the CPU."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from runtime.engines import l2_normalize
from runtime.errors import ModelUnavailable
from runtime.settings import Settings
from runtime.transforms import ImageSpec, normalize


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def create_openclip(settings: Settings, device: str = "cpu"):
    """The one place OpenCLIP models are built: returns ``(model, tokenizer, image_spec)``."""
    import open_clip
    import torch

    if settings.model_config:
        open_clip.add_model_config(settings.model_config)
    if settings.smoke:
        pretrained = None
    else:
        pretrained = settings.weights or settings.pretrained
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # smoke mode's random weights are the same at every start
            model, _, _ = open_clip.create_model_and_transforms(settings.model, pretrained=pretrained, device=device)
    except Exception as exc:  # open_clip raises RuntimeError, OSError, hub errors...
        raise ModelUnavailable(_unavailable_message(settings, exc)) from exc
    model.eval()
    return model, open_clip.get_tokenizer(settings.model), image_spec_of(model)


def image_spec_of(model) -> ImageSpec:
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    spec = ImageSpec(size=int(size))
    if cfg.get("mean") and cfg.get("std"):
        spec = ImageSpec(size=int(size), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    return spec


def _unavailable_message(settings: Settings, exc: Exception) -> str:
    if settings.weights:
        return f"Cannot load weights from {settings.weights} for {settings.model}: {exc}"
    return (
        f"Cannot load pretrained weights '{settings.pretrained}' for {settings.model} "
        f"(offline, or not in open_clip's cache). Pass --weights PATH to a local checkpoint, "
        f"or --smoke to try the API with random weights."
    )


@dataclass
class TorchEngine:
    model: object
    tokenizer: object
    spec: ImageSpec
    device: str
    model_version: str
    dimension: int

    def __post_init__(self) -> None:
        # One forward pass at a time: concurrent passes on 2 cores only fight over the cores.
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.spec.size

    @classmethod
    def load(cls, settings: Settings) -> TorchEngine:
        import torch

        device = pick_device(settings.device)
        model, tokenizer, spec = create_openclip(settings, device)
        with torch.inference_mode():
            probe = model.encode_text(tokenizer(["probe"]).to(device))
        return cls(model, tokenizer, spec, device, settings.model_version, int(probe.shape[-1]))

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(normalize(pixels, self.spec)).to(self.device)
        with self._lock, torch.inference_mode():
            vectors = self.model.encode_image(batch)
        return l2_normalize(vectors.float().cpu().numpy())

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts).to(self.device)
        with self._lock, torch.inference_mode():
            vectors = self.model.encode_text(tokens)
        return l2_normalize(vectors.float().cpu().numpy())
