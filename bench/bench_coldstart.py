"""Cold start: process start to first answered request, split into imports, weights, first forward.

    .venv/bin/python bench/bench_coldstart.py [--smoke]

Engines: torch + open_clip (the baseline) and ONNX Runtime fp32 / int8 from a baked folder. Each
runs in a fresh process; the split comes from the child's own clock. The last rows are the cold start
as a Lambda sees it: a fresh process imports the deployed handler (lambda_image/handler.py: the app
and its engine are built at import, during the function's init) and answers its first API Gateway
event (a 1024x768 JPEG, single mode).

The last table splits the deployed server's cold start (``serve --model-dir`` on the baked folder)
into its steps, each timed in a fresh process as serve runs them: the interpreter, the imports (the
ten biggest, from ``python -X importtime``, follow), the settings, the image session, the app, the
store, the first request; then what is deferred past the first answer (the first text request, which
loads the text session and the tokenizer; the OpenAPI document; boto3) and what each costs then. The
end-to-end figure is a real ``serve --model-dir`` process, from its start to its first 200 on
``/image-similarity``, divided by plain open_clip's cold start (the torch row's process total). It
can be below the sum of the steps: serve loads the engine in a thread while it imports the web stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, ServerProcess, baked_folder, model_settings, parser, polling_client, print_table

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


STEPS_CHILD = r"""
import base64, json, os, sys, tempfile, time
started = time.time()
marks = {}
def mark(step, since):
    now = time.perf_counter()
    marks[step] = now - since
    return now
clock = time.perf_counter()
import runtime.cli.serve, runtime.api.app, uvicorn
clock = mark("imports: runtime.cli.serve, runtime.api.app, uvicorn", clock)
import onnxruntime, tokenizers
clock = mark("imports: onnxruntime, tokenizers (at engine load)", clock)
from runtime.settings import Settings
from runtime.engines.model_folder import settings_for_model_dir
settings = settings_for_model_dir(Settings.from_env(data_dir=tempfile.mkdtemp(), micro_batching=False))
clock = mark("settings (from the environment + the folder's manifest)", clock)
from runtime.engines import load_engine
engine = load_engine(settings)
clock = mark("ONNX engine: the image session (the text tower loads on the first text request)", clock)
from runtime.engines.model_folder import IMAGE_GRAPH, TEXT_GRAPH, graph_file
from pathlib import Path
options = onnxruntime.SessionOptions()
options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # the baked graphs are optimised
for name, graph in (("image", IMAGE_GRAPH), ("text", TEXT_GRAPH)):
    path = Path(settings.model_dir) / graph_file(graph, "fp32")
    clock = time.perf_counter()
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    mark(f"  of which the {name} session alone", clock)
from runtime.engines.model_folder import TOKENIZER_FILE, read_manifest
from runtime.engines.tokenizer import load_tokenizer
clock = time.perf_counter()
folder = Path(settings.model_dir)
load_tokenizer(folder / TOKENIZER_FILE, read_manifest(folder).get("tokenizer", "clip"))
mark("  of which the tokenizer alone", clock)
clock = time.perf_counter()
app = runtime.api.app.create_app(settings, engine=engine, served_on="127.0.0.1")
clock = mark("app: routes, pydantic models, middleware", clock)
app.state.libraries.open()
clock = mark("store open (local SQLite)", clock)
from starlette.testclient import TestClient
client = TestClient(app, base_url="http://127.0.0.1")
headers = {"content-type": "application/json"}
body = json.dumps({"img": sys.argv[1]})
clock = time.perf_counter()
assert client.post("/image-similarity", content=body, headers=headers).status_code == 200
clock = mark("first request (1024x768 base64 JPEG, in process)", clock)
client.post("/image-similarity", content=body, headers=headers)
clock = mark("  for comparison: the second request", clock)
assert client.post("/image-similarity", json={"text": "a photo"}).status_code == 200
clock = mark("deferred: the first text request (loads the text session and the tokenizer)", clock)
from fastapi.openapi.utils import get_openapi
get_openapi(title=app.title, version=app.version, routes=app.routes)
clock = mark("deferred: the OpenAPI document (built on its first request)", clock)
import runtime.libraries.aws.s3vectors, boto3
mark("deferred: the S3 Vectors store + boto3 imports (store s3vectors only)", clock)
print(json.dumps({"started": started, "marks": marks}))
"""


def import_times(*modules: str) -> list[tuple[str, float]]:
    """The ten biggest top-level packages in ``python -X importtime`` of ``modules`` (ms, cumulative)."""
    code = "import " + ", ".join(modules)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True)
    biggest: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        package = name.strip().split(".")[0]
        if package == "runtime":  # holds all the others
            continue
        biggest[package] = max(biggest.get(package, 0.0), int(cumulative) / 1000)
    return sorted(biggest.items(), key=lambda item: -item[1])[:10]


def serve_steps(folder: Path, torch_total: float) -> None:
    """Where ``serve --model-dir``'s cold start goes (see the module's doc)."""
    from tests.fakes.images import b64, image_bytes

    photo = b64(image_bytes(0, size=(1024, 768), fmt="JPEG", quality=90))
    env = {**os.environ, "IMSIM_MODEL_DIR": str(folder), "HF_HUB_OFFLINE": "1"}
    spawned = time.time()
    child = subprocess.run(
        [sys.executable, "-c", STEPS_CHILD, photo], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if child.returncode:
        raise SystemExit(child.stderr[-3000:])
    split = json.loads(child.stdout.strip().splitlines()[-1])
    steps = {"interpreter start (to the first line)": split["started"] - spawned, **split["marks"]}
    total = sum(seconds for step, seconds in steps.items() if not step.startswith(("  ", "deferred")))
    rows = [
        [step, seconds, "" if step.startswith(("  ", "deferred")) else f"{seconds / total:.1%}"]
        for step, seconds in steps.items()
    ]
    first_answer = serve_first_answer(folder, photo)
    rows.append(["sum of the steps above (in one process)", total, "100.0%"])
    rows.append(["serve --model-dir: process start to first 200 (HTTP)", first_answer, ""])
    print_table(
        f"Where the cold start goes (serve --model-dir, {folder.name}; seconds; share of the sum)",
        ["step", "seconds", "share"],
        rows,
    )
    print(f"serve --model-dir first 200 / plain open_clip's cold start: {first_answer / torch_total:.2f}x")
    imports = import_times("runtime.cli.serve", "runtime.api.app", "uvicorn")
    print_table(
        "The ten biggest imports besides runtime's own (python -X importtime, cumulative ms, inflated by the tracing)",
        ["package", "ms"],
        [[name, ms] for name, ms in imports],
    )


def serve_first_answer(folder: Path, photo: str) -> float:
    """Seconds from ``serve --model-dir``'s process start to its first 200 on /image-similarity."""
    import httpx

    from tests.fakes.servers import free_port

    port = free_port()
    command = [sys.executable, "-m", "runtime", "serve", "--port", str(port), "--log-level", "warning"]
    command += ["--model-dir", str(folder), "--data-dir", tempfile.mkdtemp(prefix="bench-data-")]
    body = json.dumps({"img": photo}).encode()
    with polling_client() as client:  # made before the clock starts: it is not the server's cost
        started = time.perf_counter()
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            while server.poll() is None:
                try:
                    answer = client.post(
                        f"http://127.0.0.1:{port}/image-similarity",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    if answer.status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    time.sleep(0.02)
            raise SystemExit(f"serve exited with {server.returncode}")
        finally:
            server.terminate()
            server.wait(timeout=30)


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
    serve_steps(folder, torch_total)


if __name__ == "__main__":
    main()
