"""GPU check: what the SageMaker backend does on a CUDA machine, in under 5 minutes.

    .venv/bin/python bench/gpu_check.py            # on a CUDA machine: real-size ViT-B-32, random weights
    .venv/bin/python bench/gpu_check.py --smoke    # on the CPU, tiny model, seconds (CI)

It measures, in one run:
1. torch fp32 against fp16 on the device: the lowest cosine over a probe set, and the speed of each;
2. images/s at batch 1, 8, 32 and 64 through the SageMaker container's ``POST /invocations`` over HTTP
   (``python -m runtime serve --sagemaker``), with several clients so that JPEG decoding spreads over
   the CPU cores while the GPU computes;
3. the same through the front path: the light front API (engine ``sagemaker``, no model) calling the
   container through boto3's real sagemaker-runtime client, pointed at a loopback shim that forwards
   ``/endpoints/NAME/invocations`` to the container (what SageMaker does in front of a container).
Figures are printed against the machine's limit measured in the same run (bench/limits.py) and
against clip-as-service's published 286 images/s for ViT-B-32 on a TITAN RTX.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from bench.common import ServerProcess, model_settings, parser, print_table, run_clients_together, server_args
from bench.limits import measure
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import SageMakerRuntime

CLIP_AS_SERVICE_IMAGES_PER_S = 286.0  # ViT-B-32 on a TITAN RTX, clip-as-service's published benchmark
BATCHES = (1, 8, 32, 64)
ENDPOINT = "gpu-check"


def precision_check(settings, smoke: bool) -> tuple[list[list], object, int]:
    """fp32 against fp16 on the device: lowest cosine and images/s of each (fp16 only on CUDA)."""
    from runtime.engines.torch_engine import TorchEngine

    fp32 = TorchEngine.load(settings.replace(gpu_fp16=False))
    limit = measure(fp32, seconds=0.3 if smoke else 2.0)
    size = fp32.image_size
    probe = np.random.default_rng(0).integers(0, 256, size=(64, size, size, 3), dtype=np.uint8)
    rows = [["fp32", "1.000000", f"{_images_per_s(fp32, probe):.1f}"]]
    if fp32.device.startswith("cuda"):
        fp16 = TorchEngine.load(settings.replace(gpu_fp16=True))
        cosine = float(np.min(np.sum(fp16.encode_images(probe) * fp32.encode_images(probe), axis=1)))
        rows.append([f"fp16 (used: {fp16.half})", f"{cosine:.6f}", f"{_images_per_s(fp16, probe):.1f}"])
    else:
        rows.append(["fp16", "n/a on the CPU", ""])
    return rows, limit, size


def _images_per_s(engine, probe: np.ndarray) -> float:
    engine.encode_images(probe[:8])  # warm up
    start = time.perf_counter()
    engine.encode_images(probe)
    return len(probe) / (time.perf_counter() - start)


def throughput(url: str, path: str, batch: int, clients: int, seconds: float, bodies: list[dict]) -> tuple[float, int]:
    """Images/s and error count with ``clients`` threads posting batches of ``batch`` images."""
    images, errors = 0, 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        nonlocal images, errors
        with httpx.Client(base_url=url, timeout=120) as http:
            i = index
            while time.perf_counter() < stop_at:
                body = {"inputs": [bodies[(i + k) % len(bodies)] for k in range(batch)]}
                response = http.post(path, json=body)
                with lock:
                    images += batch if response.status_code == 200 else 0
                    errors += response.status_code != 200
                i += batch

    seconds = run_clients_together(client, clients)
    return images / seconds, errors


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, default=8.0, help="per batch size and path")
    args = cli.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    batches = (1, 8) if args.smoke else BATCHES
    settings = model_settings(args.smoke)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = settings.replace(device=device)
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu (no CUDA: a smoke run only)'}")
    precision_rows, limit, image_size = precision_check(settings, args.smoke)
    print_table("Precision (torch, same probe images)", ["precision", "min cosine vs fp32", "images/s"], precision_rows)

    clients = max(2, (os.cpu_count() or 2) // 2)
    photos = [{"img": b64(image_bytes(i, size=(1024, 768), fmt="JPEG", quality=90))} for i in range(16)]
    env = {"IMSIM_MAX_BATCH": str(max(batches)), "IMSIM_MAX_INFLIGHT_REQUESTS": "0"}
    rows = []
    container_flags = [*server_args(settings), "--sagemaker", "--engine", "torch", "--device", device]
    with ServerProcess(*container_flags, env=env) as container:
        for batch in batches:
            throughput(container.url, "/invocations", batch, clients, min(1.0, seconds), photos)  # warm up
            rate, errors = throughput(container.url, "/invocations", batch, clients, seconds, photos)
            rows.append(_row("container /invocations", batch, rate, errors, limit))
        shim = SageMakerRuntime(container.url)
        front_env = {
            **env,
            "IMSIM_ENGINE": "sagemaker",
            "IMSIM_SAGEMAKER_ENDPOINT": ENDPOINT,
            "IMSIM_IMAGE_SIZE": str(image_size),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": shim.url,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "AWS_ACCESS_KEY_ID": "gpu-check",
            "AWS_SECRET_ACCESS_KEY": "gpu-check",
            "IMSIM_STORE": "off",
        }
        try:
            with ServerProcess("--data-dir", settings.data_dir, env=front_env) as front:
                for batch in batches:
                    throughput(front.url, "/image-similarity", batch, clients, min(1.0, seconds), photos)
                    rate, errors = throughput(front.url, "/image-similarity", batch, clients, seconds, photos)
                    rows.append(_row("front -> container", batch, rate, errors, limit))
        finally:
            shim.close()
    print_table(
        f"GPU check ({settings.model_version}, {clients} clients, 1024x768 JPEGs, {seconds:g} s per row)",
        ["path", "batch", "images/s", "of limit", "vs clip-as-service 286/s", "errors"],
        rows,
    )
    print(limit.describe())


def _row(path: str, batch: int, rate: float, errors: int, limit) -> list:
    return [path, batch, rate, limit.fraction(rate), f"{rate / CLIP_AS_SERVICE_IMAGES_PER_S:.2f}x", errors]


if __name__ == "__main__":
    main()
