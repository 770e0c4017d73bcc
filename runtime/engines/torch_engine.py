"""The reference engine: OpenCLIP in PyTorch, on CUDA when present, else the CPU."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.engines.catalog import find
from runtime.engines.pretrained import pretrained_problem
from runtime.engines.priority import INTERACTIVE
from runtime.errors import ModelUnavailable
from runtime.inputs.images import ImageSpec, catalog_spec, normalize
from runtime.vectors import Vectors, l2_normalize

if TYPE_CHECKING:
    import torch

    from runtime.engines import Pixels
    from runtime.engines.priority import Priority
    from runtime.settings import Settings


def pick_device(requested: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU. ``cuda`` without a GPU is refused here,
    before any weights are looked for, so the error names the real reason."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("device cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto")
    return requested


def create_openclip(settings: Settings, device: str = "cpu") -> tuple[Any, Any, ImageSpec]:
    """The one place OpenCLIP models are built: returns ``(model, tokenizer, image_spec)``."""
    import open_clip
    import torch

    if settings.model_config_path:
        open_clip.add_model_config(settings.model_config_path)
    if settings.smoke:
        pretrained = None
    else:
        pretrained = settings.weights or settings.pretrained
    if not settings.smoke and not settings.weights:
        problem = pretrained_problem(settings.model, settings.pretrained)
        if problem:
            raise ModelUnavailable(problem)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # smoke mode's random weights are the same at every start
            model, _, _ = open_clip.create_model_and_transforms(settings.model, pretrained=pretrained, device=device)
    except Exception as exc:  # open_clip raises RuntimeError, OSError, hub errors...
        raise ModelUnavailable(_unavailable_message(settings, exc)) from exc
    model.eval()
    listed = find(settings.model, settings.pretrained)
    spec = catalog_spec(listed) if listed else image_spec_of(model)
    return model, open_clip.get_tokenizer(settings.model), spec


def image_spec_of(model: Any) -> ImageSpec:
    """The preprocessing open_clip attached to the model: the pretrained tag's, or its defaults (OpenAI's
    mean and std, shortest side, bicubic) for a local checkpoint or random weights."""
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    defaults = ImageSpec()
    return ImageSpec(
        size=int(size),
        mean=tuple(cfg.get("mean") or defaults.mean),
        std=tuple(cfg.get("std") or defaults.std),
        resize=cfg.get("resize_mode") or defaults.resize,
        interpolation=cfg.get("interpolation") or defaults.interpolation,
    )


def _unavailable_message(settings: Settings, exc: Exception) -> str:
    reason = " ".join(str(exc).split())  # one line: the CLI prints it as its only error line
    if settings.smoke:
        return f"Cannot build {settings.model} with random weights: {reason}"
    if settings.weights:
        return f"Cannot load weights from {settings.weights} for {settings.model}: {reason}"
    return (
        f"Cannot load pretrained weights '{settings.pretrained}' for {settings.model} "
        f"(offline, or not in open_clip's cache). Pass --weights PATH to a local checkpoint, "
        f"or --smoke to try the API with random weights."
    )


@dataclass
class TorchEngine:
    model: Any  # an open_clip CLIP module
    tokenizer: Any  # open_clip's tokenizer: list of texts -> token tensor
    spec: ImageSpec
    device: str
    model_version: str
    dimension: int
    half: bool = False
    """fp16 autocast on CUDA, kept only when it agrees with fp32 (see ``use_fp16_if_faithful``)."""

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
        engine = cls(model, tokenizer, spec, device, settings.model_version, int(probe.shape[-1]))
        if device.startswith("cuda") and settings.gpu_fp16:
            engine.use_fp16_if_faithful()
        return engine

    def use_fp16_if_faithful(self, floor: float = 0.999) -> float:
        """Switch to fp16 autocast when it keeps cosine >= ``floor`` against fp32 on probe inputs."""
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, size=(8, self.image_size, self.image_size, 3), dtype=np.uint8)
        texts = ["a photo of a cat", "a diagram of a bridge", "数字 123", "x"]
        full = (self.encode_images(pixels), self.encode_texts(texts))
        self.half = True
        halved = (self.encode_images(pixels), self.encode_texts(texts))
        worst = min(float(np.min(np.sum(a * b, axis=1))) for a, b in zip(full, halved))
        self.half = worst >= floor
        return worst

    def _forward(self, encode: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> Vectors:
        import torch

        with self._lock, torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            vectors = encode(batch)
        return l2_normalize(vectors.float().cpu().numpy())

    def encode_images(self, pixels: Pixels, priority: Priority = INTERACTIVE) -> Vectors:
        import torch

        batch = torch.from_numpy(normalize(pixels, self.spec)).to(self.device)
        return self._forward(self.model.encode_image, batch)

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        return self._forward(self.model.encode_text, self.tokenizer(texts).to(self.device))
