"""Where one 12 MP base64 JSON request's time goes, sampled in the server by py-spy.

    .venv/bin/pip install py-spy     # once; this script installs nothing
    .venv/bin/python bench/profile_upload.py [--smoke] [--requests N] [--rate HZ]

The deployed shape: ``python -m runtime serve --model-dir`` on a baked folder (ViT-B-32 with seeded
random weights; ``--smoke``: the tiny test model and a 1008x756 photo), one client sending the
4032x3024 photo of bench_upload.py as base64 JSON to ``/image-similarity``, one request at a time.
py-spy samples every Python thread of the server (idle ones, waiting on a socket or a queue, are
left out) while the requests run; each sample goes to the first step its stack names, read from the
innermost frame out (so the forward pass inside a route counts as the forward pass). The table gives
each step's share of the sampled time and its thread-milliseconds per request (samples / rate /
requests). Shares survive a busy machine better than milliseconds.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.bench_upload import PHOTO_SIZE, phone_photo
from bench.common import ServerProcess, baked_folder, model_settings, p50, parser, print_table

IMAGES = "runtime/inputs/images.py"
WAITING = "waiting on another thread (lock, queue, future)"
# (step, does this frame belong to it), tried in order on each frame from the innermost one out;
# a frame is (function, file), the function without its class.
STEPS: list[tuple[str, Callable[[str, str], bool]]] = [
    (
        "waiting on another thread (lock, queue, future)",
        lambda f, p: (
            p.endswith(("threading.py", "queue.py")) or (f in ("result", "set_result") and "concurrent/futures" in p)
        ),
    ),
    ("forward pass (ONNX Runtime)", lambda f, p: "onnxruntime" in p or (f == "encode_images" and "engines" in p)),
    ("normalise pixels", lambda f, p: f == "normalize"),
    ("base64 decode", lambda f, p: f in ("decode_base64", "strict_base64") or p.endswith("base64.py")),
    ("EXIF orientation", lambda f, p: f in ("upright", "getexif") or "Exif" in f or "TiffImagePlugin" in p),
    (
        "resize / crop / convert to 224",
        lambda f, p: (
            f in ("prepare_image", "_prepared", "_with_filter_reach")
            or ("PIL" in p and f in ("resize", "crop", "convert", "reduce", "__array_interface__"))
        ),
    ),
    (
        "image decode (Pillow load, reduced scale)",
        lambda f, p: f in ("_load", "load", "load_read", "decode") and ("PIL" in p or p.endswith(IMAGES)),
    ),
    ("image draft", lambda f, p: f in ("draft", "_draft")),
    ("decode memory estimate / budget", lambda f, p: f in ("decode_bytes", "reserve", "release")),
    ("image open, headers, scan count", lambda f, p: "PIL" in p or f in ("open_image", "_open", "jpeg_scan_count")),
    ("image path: other runtime frames", lambda f, p: p.endswith(IMAGES) or p.endswith("embedder.py")),
    ("body-size middleware: JSON checks", lambda f, p: p.endswith("json_limits.py")),
    ("JSON parsing", lambda f, p: "json/" in p and f in ("loads", "decode", "raw_decode")),
    ("pydantic validation", lambda f, p: "pydantic" in p),
    (
        "serialising the answer",
        lambda f, p: f in ("serialize_response", "jsonable_encoder", "render") or "encoders" in p,
    ),
    (
        "receiving the body",
        lambda f, p: f in ("receive", "data_received", "on_body", "body", "handle_events") or "h11" in p,
    ),
]
# Tried on the innermost frame alone, where no step above names a frame: these wrap everything.
LEAF_STEPS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("body-size middleware: reading, counting", lambda f, p: p.endswith("api/middleware.py")),
    ("event loop (uvloop's C code: socket reads, select)", lambda f, p: "asyncio/" in p or p.endswith("selectors.py")),
]
OTHER = "other (routing, logging, event loop, threads)"


def frame_parts(frame: str) -> tuple[str, str]:
    """``func (path:line)`` as py-spy's raw format writes a frame -> (func, path)."""
    name, _, rest = frame.partition(" (")
    return name.strip().rsplit(".", 1)[-1], rest.rsplit(":", 1)[0]


def step_of(stack: str) -> str:
    frames = [frame_parts(frame) for frame in stack.split(";")]
    for function, path in reversed(frames):
        for step, belongs in STEPS:
            if belongs(function, path):
                return step
    function, path = frames[-1]
    return next((step for step, belongs in LEAF_STEPS if belongs(function, path)), OTHER)


def aggregate(raw: str) -> Counter[str]:
    """py-spy's ``--format raw`` lines (``frame;frame;... count``) -> samples per step."""
    samples: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[step_of(stack)] += int(count)
    return samples


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy (it needs ptrace: run as root)")
    return found


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--requests", type=int, default=None, help="requests sampled (default 20, smoke 5)")
    cli.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = cli.parse_args()
    spy = py_spy()
    requests = args.requests or (5 if args.smoke else 20)
    settings = model_settings(args.smoke)
    folder = baked_folder(settings)
    photo = phone_photo((1008, 756) if args.smoke else PHOTO_SIZE)
    body = json.dumps({"img": base64.b64encode(photo).decode("ascii")}).encode()
    flags = ["--model-dir", str(folder), "--data-dir", tempfile.mkdtemp(prefix="bench-data-"), "--no-micro-batching"]
    out = Path(tempfile.mkdtemp(prefix="profile-upload-")) / "samples.txt"
    env = {"HF_HUB_OFFLINE": "1", "IMSIM_STORE": "off"}
    with ServerProcess(*flags, env=env) as server, httpx.Client(base_url=server.url, timeout=120) as client:

        def send() -> float:
            started = time.perf_counter()
            client.post("/image-similarity", content=body, headers={"content-type": "application/json"})
            return (time.perf_counter() - started) * 1000

        for _ in range(2):  # warm: first-request work is the cold start's, not the request's
            send()
        command = [spy, "record", "--pid", str(server.process.pid), "--rate", str(args.rate)]
        recorder = subprocess.Popen([*command, "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        walls = [send() for _ in range(requests)]
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    print_profile(aggregate(out.read_text()), args.rate, requests)
    print(
        f"({len(photo) / 1e6:.2f} MB JPEG, {len(body) / 1e6:.2f} MB body; {settings.model_version}; "
        f"p50 {p50(walls):.1f} ms from the client, py-spy attached; raw samples in {out})"
    )


def print_profile(samples: Counter[str], rate: int, requests: int) -> None:
    """The steps' shares of the working samples; a thread waiting on another (the request's thread
    on the forward pass's future, say) is not work and is left out of the shares."""
    waiting = samples.pop(WAITING, 0)
    total = sum(samples.values()) or 1

    def per_request(count: int) -> float:
        return count / rate / requests * 1000

    rows = [[step, f"{count / total:.1%}", per_request(count), count] for step, count in samples.most_common()]
    rows.append(["all the work above", "100.0%", per_request(total), total])
    rows.append([f"not work: {WAITING}", "", per_request(waiting), waiting])
    print_table(
        f"Where a base64 request's time goes ({requests} requests, one at a time; py-spy at {rate} Hz)",
        ["step", "share", "thread-ms per request", "samples"],
        rows,
    )


if __name__ == "__main__":
    main()
