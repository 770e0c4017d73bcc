"""One phone photo three ways through the real HTTP server: base64 in JSON, the raw bytes, a multipart form.

    nice -n 10 .venv/bin/python bench/bench_upload.py [--engine onnx|torch] [--smoke]

A 12 MP photo (4032x3024 JPEG, photo-like noise so it is as large as a camera's) is sent to
``/image-similarity`` by one client, on the tiny test model (the model's forward pass is not what is
compared: the body's size, its parsing and decoding are). Prints the body size, p50/p95, and each
way's p50 against base64 JSON's.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import ServerProcess, model_settings, p50, p95, parser, print_table, server_args, timed  # noqa: E402

PHOTO_SIZE = (4032, 3024)


def phone_photo(size: tuple[int, int], seed: int = 0) -> bytes:
    """A JPEG as large as a camera's: smooth light plus sensor-like noise (synthetic gradients alone
    compress to a tenth of a real photo's size)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 120 + 60 * np.sin(x / 300)[..., None] * np.cos(y / 200)[..., None] * rng.uniform(0.5, 1, 3)
    pixels = light + rng.normal(0, 14, size=(height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=92)
    return out.getvalue()


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--engine", default="onnx", choices=["onnx", "torch"])
    args = cli.parse_args()
    repeat = 2 if args.smoke else 7
    settings = model_settings(smoke=True).replace(engine=args.engine, micro_batching=False)  # always the tiny model
    from runtime.engines import load_engine

    load_engine(settings)  # exports the ONNX graphs once, for the server to reuse
    photo = phone_photo((1008, 756) if args.smoke else PHOTO_SIZE)
    as_json = json.dumps({"img": base64.b64encode(photo).decode("ascii")}).encode()
    boundary = "bench-upload-boundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="img"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    ways = [
        ("base64 JSON", as_json, "application/json"),
        ("binary (image/jpeg)", photo, "image/jpeg"),
        ("multipart/form-data", form, f"multipart/form-data; boundary={boundary}"),
    ]
    rows, baseline = [], None
    flags = [*server_args(settings), "--engine", args.engine, "--no-micro-batching"]
    with ServerProcess(*flags) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for name, body, content_type in ways:

            def send(body=body, content_type=content_type):
                response = client.post("/image-similarity", content=body, headers={"content-type": content_type})
                response.raise_for_status()

            samples = timed(send, repeat, warmup=1)
            baseline = baseline or p50(samples)
            rows.append([name, f"{len(body) / 1e6:.2f}", p50(samples), p95(samples), f"{p50(samples) / baseline:.2f}x"])
    width, height = Image.open(io.BytesIO(photo)).size
    where = f"{settings.model_version}, engine {args.engine}"
    print_table(
        f"Upload ways ({width}x{height} JPEG, {len(photo) / 1e6:.2f} MB; {where})",
        ["body", "MB sent", "p50 ms", "p95 ms", "vs base64 JSON"],
        rows,
    )


if __name__ == "__main__":
    main()
