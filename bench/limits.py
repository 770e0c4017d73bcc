"""The machine's limit, measured in the same run as a benchmark: matrix-multiply rate and model FLOPs.

Every benchmark that reports images/s also reports it as a fraction of the fp32 ceiling:

    ceiling (images/s) = sustained fp32 GEMM rate (FLOP/s on these cores) / FLOPs of one image

The GEMM rate is measured with the same BLAS the engines use (torch's, on the CPU; cuBLAS on a GPU),
on square matrices of the size of the model's largest matmuls, for about a second. The model's FLOPs
are counted by torch's FLOP counter on one forward pass of the image tower (2 FLOPs per multiply-add).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    gemm_gflops: float  # sustained fp32 (or the given dtype) GEMM rate, GFLOP/s
    image_gflop: float  # FLOPs of one image through the image tower, in GFLOP
    device: str

    @property
    def images_per_s(self) -> float:
        return self.gemm_gflops / self.image_gflop

    def fraction(self, images_per_s: float) -> str:
        return f"{images_per_s / self.images_per_s:.2f}"

    def describe(self) -> str:
        return (
            f"machine limit ({self.device}): GEMM {self.gemm_gflops:.0f} GFLOP/s / {self.image_gflop:.2f} GFLOP "
            f"per image = {self.images_per_s:.1f} images/s"
        )


def gemm_gflops(device: str = "cpu", size: int = 1024, seconds: float = 1.0, dtype: str = "float32") -> float:
    """Sustained GEMM rate on ``device`` with torch's BLAS, all of this process's CPU threads."""
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.randn(size, size, device=device, dtype=torch_dtype)
    b = torch.randn(size, size, device=device, dtype=torch_dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):  # warm up: thread pool, clocks, caches
        a @ b
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if runs % 4 == 0:
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2 * size**3 * runs / elapsed / 1e9


def image_gflop(torch_model, image_size: int) -> float:
    """FLOPs of one image through ``torch_model.encode_image``, counted by torch (GFLOP)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(torch_model.parameters()).device
    pixels = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    # In eval mode nn.MultiheadAttention takes a fused kernel the counter cannot see (a third of
    # ViT-B-32's FLOPs); train mode takes the plain matmuls. No gradients, so nothing changes.
    was_training = torch_model.training
    torch_model.train()
    try:
        with torch.no_grad(), counter:
            torch_model.encode_image(pixels)
    finally:
        torch_model.train(was_training)
    return counter.get_total_flops() / 1e9


def measure(torch_engine, seconds: float = 1.0) -> Limit:
    """The limit for ``torch_engine``'s model on its device (a TorchEngine)."""
    device = str(next(torch_engine.model.parameters()).device)
    return Limit(
        gemm_gflops=gemm_gflops(device, seconds=seconds),
        image_gflop=image_gflop(torch_engine.model, torch_engine.image_size),
        device=device if device != "cpu" else f"cpu, {os.cpu_count()} cores",
    )
