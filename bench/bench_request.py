"""The request path through the real HTTP server, against the engine's own forward time.

The server is ``serve --model-dir`` on the baked folder, as deployed (``--smoke``: the tiny model as
it is); the forward pass is timed in this process on the same graphs.

    .venv/bin/python bench/bench_request.py [--engine onnx|torch] [--smoke]

For each request (single 1024x768 and 4096x3072 JPEG by base64 and by URL, a pair, a batch of 8,
a text) it prints p50/p95 and the overhead ratio: request p50 / the engine's forward p50 at the
same batch size, measured in this process on the same model while the server is idle, in turns with
the requests (one of each per round). Each request is also divided by its bare floor (issue 26,
``bench.common.bare_prepare``): ``base64.b64decode`` of its base64 images, Pillow's draft decode and
one resize of each image, and the forward pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from bench.common import (
    ServerProcess,
    bare_prepare,
    interleaved,
    model_settings,
    p50,
    p95,
    parser,
    print_table,
    served_as_deployed,
)
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import FileServer


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--engine", default="onnx", choices=["onnx", "torch"])
    args = cli.parse_args()
    rounds = 3 if args.smoke else 15
    settings = model_settings(args.smoke).replace(engine=args.engine, micro_batching=False)
    settings, served = served_as_deployed(settings, args.smoke)
    from runtime.engines import load_engine

    engine = load_engine(settings)  # the graphs the server loads
    size = engine.image_size
    rng = np.random.default_rng(0)
    batches = {n: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for n in (1, 2, 8)}
    forwards = {n: (lambda n=n: engine.encode_images(batches[n])) for n in (1, 2, 8)}
    forwards["text"] = lambda: engine.encode_texts(["a photo of a cat on a sofa"])

    small = image_bytes(1, size=(1024, 768), fmt="JPEG", quality=90)
    large = image_bytes(2, size=(4096, 3072), fmt="JPEG", quality=90)
    files = FileServer({"/small.jpg": (200, {}, small), "/large.jpg": (200, {}, large)})
    pair = image_bytes(3, size=(1024, 768), fmt="JPEG")
    batch = [image_bytes(i, size=(1024, 768), fmt="JPEG") for i in range(8)]
    # (name, body, forward batch, the photos it carries, whether they go as base64)
    cases = [
        ("single 1024x768 base64", {"img": b64(small)}, 1, [small], True),
        ("single 1024x768 url", {"url": files.base + "/small.jpg"}, 1, [small], False),
        ("single 4096x3072 base64", {"img": b64(large)}, 1, [large], True),
        ("single 4096x3072 url", {"url": files.base + "/large.jpg"}, 1, [large], False),
        ("pair 1024x768", {"img_1": b64(small), "img_2": b64(pair)}, 2, [small, pair], True),
        ("batch of 8 1024x768", {"inputs": [{"img": b64(photo)} for photo in batch]}, 8, batch, True),
        ("text", {"text": "a photo of a cat on a sofa"}, "text", [], False),
    ]
    flags = [*served, "--engine", args.engine, "--no-micro-batching", "--allow-network", "127.0.0.1/32"]
    with ServerProcess(*flags) as server, httpx.Client(base_url=server.url, timeout=120) as client:

        def sender(body: dict):
            return lambda: client.post("/image-similarity", json=body).raise_for_status()

        functions = {f"forward {n}": forward for n, forward in forwards.items()}
        functions.update({name: sender(body) for name, body, *_ in cases})
        for name, _, _, photos, encoded in cases:
            texts = [b64(photo) for photo in photos] if encoded else None
            functions[f"bare {name}"] = lambda photos=photos, texts=texts: bare_prepare(photos, texts, size)
        samples = interleaved(functions, rounds, warmup=2)
    files.close()
    rows = []
    for name, _, batch, _, _ in cases:
        forward = p50(samples[f"forward {batch}"])
        request = samples[name]
        bare = forward + p50(samples[f"bare {name}"])
        ratios = [f"{p50(request) / forward:.2f}x", bare, f"{p50(request) / bare:.2f}x"]
        rows.append([name, p50(request), p95(request), forward, *ratios])
    print_table(
        f"Request path ({settings.model_version}, engine {args.engine}, one client)",
        ["request", "p50 ms", "p95 ms", "engine forward ms", "overhead ratio", "bare floor ms", "bare ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
