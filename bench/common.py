"""Shared by the benchmarks: the model under test, timing, servers, and the printed table."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run on a tiny model (CI)")
    return p


def model_settings(smoke: bool):
    """Real-size ViT-B-32 with seeded random weights, or (smoke) the tiny test model."""
    from runtime.settings import Settings

    if not smoke:
        return Settings(smoke=True, data_dir=str(CACHE), device="cpu")
    from tests.fakes.model import build_tiny_checkpoint

    tiny = build_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="bench-tiny-")))
    return Settings(
        model=tiny.name,
        pretrained="tiny-random",
        weights=str(tiny.weights),
        model_config_path=str(tiny.config),
        data_dir=tempfile.mkdtemp(prefix="bench-data-"),
        device="cpu",
    )


def model_flags(settings) -> list[str]:
    """The command-line flags (of `serve` and of `runtime.bake`) that name the same model."""
    return [
        *("--model", settings.model, "--pretrained", settings.pretrained),
        *("--weights", settings.weights, "--model-config", settings.model_config_path),
    ]


def server_args(settings) -> list[str]:
    """The `python -m runtime serve` flags that load the same model as ``settings``."""
    if settings.smoke:
        return ["--smoke", "--data-dir", settings.data_dir]
    return [*model_flags(settings), "--data-dir", settings.data_dir]


def served_as_deployed(settings, smoke: bool):
    """Settings and ``serve`` flags for the model as the deployed server loads it: the real-size model
    from its baked folder (``serve --model-dir``, what the Lambda image runs), the smoke model as it is.
    An engine loaded from the settings runs the same graphs as the server."""
    if smoke:
        return settings, server_args(settings)
    folder = baked_folder(settings)
    return settings.replace(model_dir=str(folder)), ["--model-dir", str(folder), "--data-dir", settings.data_dir]


def baked_folder(settings) -> Path:
    """A folder as the image build bakes it (weights + ONNX graphs), made once."""
    folder = CACHE / f"baked-{settings.cache_key()}"
    if not (folder / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "runtime.bake", "--out", str(folder), *bake_args(settings)], cwd=ROOT, check=True
        )
    return folder


def bake_args(settings) -> list[str]:
    if settings.smoke:  # real-size model with seeded random weights: save them as a checkpoint first
        import torch

        weights = CACHE / "smoke-random.pt"
        if not weights.exists():
            from runtime.engines.torch_engine import TorchEngine

            CACHE.mkdir(exist_ok=True)
            torch.save(TorchEngine.load(settings).model.state_dict(), weights)
        return ["--model", settings.model, "--pretrained", "random-seed-0", "--weights", str(weights)]
    return model_flags(settings)


def bare_decode(photo: bytes, size: int):
    """The least any server does with an image (issue 26's bare floor): Pillow's DCT-domain reduction
    (``draft``), then one resize to the model's input; no checks, no budget, no crop."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(photo))
    image.draft("RGB", (size, size))
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def bare_prepare(photos: list[bytes], encoded: list[str] | None, size: int) -> None:
    """The bare floor of a request's inputs, short of the forward pass: ``base64.b64decode`` of each
    encoded image (``encoded``, None for raw bytes or URLs) and ``bare_decode`` of each photo."""
    import base64

    for text in encoded or ():
        base64.b64decode(text)
    for photo in photos:
        bare_decode(photo, size)


def timed(function, repeat: int, warmup: int = 1) -> list[float]:
    """Milliseconds per call."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def interleaved(functions: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Milliseconds per call of each function, taken in turns (one call of each per round), so that a
    ratio between two of them is not skewed by the machine slowing down between two blocks of calls."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def run_clients_together(client: Callable[[int], None], clients: int) -> float:
    """Runs ``client(0)`` ... ``client(clients - 1)`` in threads at once; the seconds until the last ends."""
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def _fmt(value) -> str:
    """Milliseconds and the like; format cosines and ratios before passing them in."""
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def polling_client(timeout: float = 30):
    """One HTTP client for every try while a server starts. A new one per try (``httpx.get``) builds an
    SSL context each time: 35 ms of CPU a refused try, most of a core at one try every 20 ms, taken
    from the server it waits for on a 2-core machine."""
    import httpx

    return httpx.Client(timeout=timeout)


class ServerProcess:
    """``python -m runtime serve`` in a child process on a free loopback port."""

    def __init__(self, *args: str, env: dict | None = None):
        from tests.fakes.servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "runtime", "serve", "--port", str(self.port), "--log-level", "warning", *args]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from process start to the first answered /ping."""
        import httpx

        deadline = time.monotonic() + timeout
        with polling_client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}")
                try:
                    if client.get(self.url + "/ping").status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.HTTPError:
                    time.sleep(0.02)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def __enter__(self):
        self.wait_ready()
        return self

    def __exit__(self, *exc):
        self.stop()
