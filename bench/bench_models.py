"""Every catalog family at full size (random weights): images/s against its own fp32 limit and ViT-B-32.

    .venv/bin/python bench/bench_models.py [--seconds 10] [--smoke]

Two parts, each measured in the same run as its baseline (ViT-B-32):

- **The image tower**, in this process: open_clip's model built with ``pretrained=None`` (real shapes,
  random weights), torch eager, batches of 8. Its FLOPs per image are counted by torch
  (bench/limits.py), so each family is also a fraction of its own fp32 ceiling (GEMM rate / FLOPs).
- **Served over HTTP**, where the model's tokenizer can be built offline (OpenAI's BPE: ViT-B-32,
  MobileCLIP 2): ``python -m runtime serve --model NAME --smoke`` in a child process, cold start to the
  first ``/ping``, then 1 and 8 clients sending 224 px PNGs for ``--seconds``. SigLIP's tokenizers come
  from the Hugging Face hub, so SigLIP families are timed in-process only on a machine without internet.

``--smoke`` runs the tiny test model through both parts in seconds (the figures mean nothing).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import ServerProcess, model_settings, parser, print_table, run_clients_together, server_args
from bench.limits import gemm_gflops, image_gflop
from runtime.engines.catalog import catalog
from tests.fakes.images import b64, image_bytes

BASELINE = "ViT-B-32"
FAMILIES = (
    "ViT-B-32",
    "ViT-B-32-SigLIP2-256",
    "ViT-B-16-SigLIP2",
    "ViT-B-16-SigLIP-i18n-256",
    "MobileCLIP2-S0",
    "MobileCLIP2-S2",
)
SERVED_OFFLINE_TOKENIZERS = ("clip",)


def tower_rate(model, image_size: int, seconds: float) -> float:
    """Images per second through ``model.encode_image``, batches of 8, for about ``seconds``."""
    import torch

    pixels = torch.randn(8, 3, image_size, image_size)
    with torch.no_grad():
        model.encode_image(pixels)  # warm up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.encode_image(pixels)
            done += 8
    return done / (time.perf_counter() - start)


def served_rate(url: str, clients: int, seconds: float) -> float:
    bodies = [{"img": b64(image_bytes(seed, size=(224, 224)))} for seed in range(8)]
    httpx.post(f"{url}/image-similarity", json=bodies[0], timeout=300)  # warm up: the first forward pass
    served = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            n = index
            while time.perf_counter() < stop_at:
                if http.post("/image-similarity", json=bodies[n % len(bodies)]).status_code == 200:
                    with lock:
                        served[0] += 1
                n += clients

    elapsed = run_clients_together(client, clients)
    return served[0] / elapsed


def families(smoke: bool) -> list[tuple[str, str, int, list[str]]]:
    """(name, tokenizer kind, input size, serve flags) of each family measured."""
    if smoke:
        settings = model_settings(True)
        return [(settings.model, "clip", 32, server_args(settings))]
    rows = {model.architecture: model for model in catalog()}
    return [(name, rows[name].tokenizer, rows[name].image_size, ["--model", name, "--smoke"]) for name in FAMILIES]


def build(name: str, smoke: bool):
    import open_clip

    if smoke:
        settings = model_settings(True)
        from runtime.engines.torch_engine import TorchEngine

        return TorchEngine.load(settings).model
    return open_clip.create_model(name, pretrained=None).eval().requires_grad_(False)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, default=10.0)
    args = cli.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    gemm = gemm_gflops(seconds=0.3 if args.smoke else 2.0)
    print(f"fp32 GEMM on this machine: {gemm:.0f} GFLOP/s")
    measured: dict[str, dict[str, float | str]] = {}
    for name, tokenizer, size, flags in families(args.smoke):
        model = build(name, args.smoke)
        gflop = image_gflop(model, size)
        row: dict[str, float | str] = {"gflop": gflop, "tower": tower_rate(model, size, seconds)}
        del model
        if tokenizer in SERVED_OFFLINE_TOKENIZERS:
            with ServerProcess(*flags) as server:
                row["cold"] = server.wait_ready()
                row["1 client"] = served_rate(server.url, 1, seconds)
                row["8 clients"] = served_rate(server.url, 8, seconds)
        measured[name] = row
    base = measured.get(BASELINE) or next(iter(measured.values()))
    rows = []
    for name, row in measured.items():
        limit = gemm / float(row["gflop"])
        served = [f"{row[k]:.1f} ({float(row[k]) / limit:.2f})" if k in row else "-" for k in ("1 client", "8 clients")]
        rows.append(
            [
                name,
                f"{row['gflop']:.2f}",
                f"{limit:.1f}",
                f"{row['tower']:.1f} ({float(row['tower']) / limit:.2f})",
                f"{float(row['tower']) / float(base['tower']):.2f}x",
                *served,
                f"{row['cold']:.1f}" if "cold" in row else "- (hub tokenizer)",
            ]
        )
    print_table(
        "Models: images/s (fraction of the family's fp32 limit); tower vs ViT-B-32 in the same run",
        ["model", "GFLOP/image", "fp32 limit/s", "tower b8", "vs ViT-B-32", "served 1", "served 8", "cold start s"],
        rows,
    )


if __name__ == "__main__":
    main()
