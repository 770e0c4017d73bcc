"""Cold start: process start to first answered request, split into imports, weights, first forward.

    .venv/bin/python bench/bench_coldstart.py [--smoke]

Engines: torch + open_clip (the baseline) and ONNX Runtime fp32 / int8 from a baked folder. Each
runs in a fresh process; the split comes from the child's own clock. The last rows are the cold start
as a Lambda sees it: a fresh process imports the deployed handler (lambda_image/handler.py: the app
and its engine are built at import, during the function's init) and answers its first API Gateway
event (a 1024x768 JPEG, single mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, ServerProcess, baked_folder, model_settings, parser, print_table

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from runtime.settings import Settings
from runtime.api.app import create_app
kind = sys.argv[1]
if kind == "torch":
    import open_clip, torch  # what the torch engine needs, loaded before the clock reads "imports"
else:
    import onnxruntime, tokenizers
imported = time.perf_counter()
settings = Settings.from_env(engine=kind, micro_batching=False)
from runtime.engines import load_engine
engine = load_engine(settings)
loaded = time.perf_counter()
engine.encode_images(np.zeros((1, engine.image_size, engine.image_size, 3), dtype=np.uint8))
engine.encode_texts(["a photo"])
first = time.perf_counter()
print(json.dumps({"imports": imported - start, "weights": loaded - imported, "first forward": first - loaded}))
"""


LAMBDA_CHILD = r"""
import base64, importlib.util, io, json, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
initialised = time.perf_counter()
body = base64.b64encode(json.dumps({"img": sys.argv[2]}).encode()).decode()
headers = {"Content-Type": "application/json", "Host": "api.example"}
event = {
    "resource": "/image-similarity", "path": "/image-similarity", "httpMethod": "POST", "headers": headers,
    "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
    "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
    "requestContext": {"resourcePath": "/image-similarity", "httpMethod": "POST", "path": "/prod/image-similarity",
                       "stage": "prod", "requestId": "cold", "identity": {"sourceIp": "203.0.113.7"}},
    "body": body, "isBase64Encoded": True,
}
class Context:
    function_name, aws_request_id, memory_limit_in_mb = "bench", "cold", 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self):
        return 29000
answer = module.handler(event, Context())
first = time.perf_counter()
assert answer["statusCode"] == 200, answer
print(json.dumps({"init": initialised - start, "first event": first - initialised}))
"""


def lambda_cold_start(folder: Path, precision: str) -> tuple[float, dict]:
    """Seconds from process start to the first answered event, and the child's own split."""
    from tests.fakes.images import b64, image_bytes

    env = {**os.environ, "IMSIM_MODEL_DIR": str(folder), "IMSIM_ONNX_PRECISION": precision, "HF_HUB_OFFLINE": "1"}
    env["IMSIM_STORE"] = "off"
    photo = b64(image_bytes(0, size=(1024, 768), fmt="JPEG", quality=90))
    handler = str(ROOT / "lambda_image" / "handler.py")
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", LAMBDA_CHILD, handler, photo], cwd=ROOT, env=env, capture_output=True, text=True
    )
    total = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(child.stderr[-3000:])
    return total, json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parser(__doc__).parse_args()
    settings = model_settings(args.smoke)
    folder = baked_folder(settings)
    env = {**os.environ, "IMSIM_MODEL_DIR": str(folder), "HF_HUB_OFFLINE": "1"}
    rows, baseline = [], None
    for kind, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
        run_env = {**env, "IMSIM_ONNX_PRECISION": precision}
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", CHILD, kind], cwd=ROOT, env=run_env, capture_output=True, text=True
        )
        total = time.perf_counter() - started
        if child.returncode:
            raise SystemExit(child.stderr)
        split = json.loads(child.stdout.strip().splitlines()[-1])
        with ServerProcess("--engine", kind, "--onnx-precision", precision, env=run_env) as server:
            http_ready = server.wait_ready()
        baseline = baseline or total
        rows.append(
            [
                f"{kind} {precision}",
                split["imports"],
                split["weights"],
                split["first forward"],
                total,
                http_ready,
                f"{baseline / total:.2f}x",
            ]
        )
    print_table(
        f"Cold start ({settings.model_version}, seconds, fresh process each)",
        ["engine", "imports", "weights", "first forward", "process total", "to first /ping", "faster vs torch"],
        rows,
    )
    torch_total = rows[0][4]
    lambda_rows = []
    for precision in ("fp32", "auto"):
        total, split = lambda_cold_start(folder, precision)
        lambda_rows.append(
            [f"onnx {precision}", split["init"], split["first event"], total, f"{total / torch_total:.2f}x"]
        )
    print_table(
        "Cold start as a Lambda sees it (seconds: handler import + init, first event, process total)",
        ["engine", "init", "first event", "process total", "of plain torch's process total"],
        lambda_rows,
    )


if __name__ == "__main__":
    main()
