"""Throughput and p95 with 1, 4, 8 and 16 concurrent clients, micro-batching on and off.

    .venv/bin/python bench/bench_concurrency.py [--engine onnx|torch] [--seconds 15] [--smoke]

Each client sends single-image requests (a 1024x768 JPEG, base64) back to back for a fixed time to a
server of a baked folder (as the images serve it): in fp32 with micro-batching off and on, and, with
ONNX, as deployed (``--onnx-precision auto``: int8 where bake measured that it agrees with fp32) when
that is not fp32 already. The baseline is one client, fp32, micro-batching off, measured in the same
run; the machine's fp32 limit (bench/limits.py) is measured in the same run too, and throughput is
printed as a fraction of it.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import (
    ServerProcess,
    baked_folder,
    model_settings,
    p50,
    p95,
    parser,
    print_table,
    run_clients_together,
)
from bench.limits import measure
from runtime.engines.model_folder import served_precision
from tests.fakes.images import b64, image_bytes


def run_clients(url: str, clients: int, seconds: float, bodies: list[dict]) -> tuple[float, list[float], int]:
    """Requests per second, latencies (ms) and error count for ``clients`` threads over ``seconds``."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=120) as http:
            i = index
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = http.post("/image-similarity", json=bodies[i % len(bodies)])
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
                    errors += response.status_code != 200
                i += clients

    seconds = run_clients_together(client, clients)
    return len(latencies) / seconds, latencies, errors


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--engine", default="onnx", choices=["onnx", "torch"])
    cli.add_argument("--seconds", type=float, default=15.0)
    args = cli.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    levels = (1, 4) if args.smoke else (1, 4, 8, 16)
    settings = model_settings(args.smoke).replace(engine=args.engine)
    folder = baked_folder(settings)
    from runtime.engines.torch_engine import TorchEngine

    limit = measure(TorchEngine.load(settings.replace(device="cpu")), seconds=0.3 if args.smoke else 2.0)
    bodies = [{"img": b64(image_bytes(i, size=(1024, 768), fmt="JPEG", quality=90))} for i in range(16)]
    servings = [("fp32", False), ("fp32", True)]
    deployed = served_precision(folder, "auto")
    if args.engine == "onnx" and deployed != "fp32":
        servings.append((f"auto: {deployed}", True))
    rows, baseline = [], None
    for precision, batching in servings:
        flags = ["--model-dir", str(folder), "--data-dir", settings.data_dir, "--engine", args.engine]
        flags += ["--onnx-precision", precision.split(":")[0]]
        if not batching:
            flags.append("--no-micro-batching")
        with ServerProcess(*flags) as server:
            run_clients(server.url, 2, 1.0, bodies)  # warm up
            for clients in levels:
                throughput, latencies, errors = run_clients(server.url, clients, seconds, bodies)
                baseline = baseline or throughput
                rows.append(
                    [
                        precision,
                        "on" if batching else "off",
                        clients,
                        throughput,
                        p50(latencies),
                        p95(latencies),
                        f"{throughput / baseline:.2f}x",
                        limit.fraction(throughput),
                        errors,
                    ]
                )
    print_table(
        f"Concurrency ({settings.model_version}, engine {args.engine}, {seconds:g} s per level)",
        ["precision", "micro-batching", "clients", "requests/s", "p50 ms", "p95 ms", "vs 1 client", "of fp32 limit"]
        + ["errors"],
        rows,
    )
    print(limit.describe())
    if args.engine == "onnx" and deployed == "fp32":
        print("as deployed (--onnx-precision auto) this folder serves fp32: bake kept no int8 variant")


if __name__ == "__main__":
    main()
