"""Cold start added by the Powertools wiring: init (handler module loaded) and first event, fresh processes.

    .venv/bin/python bench/bench_powertools.py [--baseline REV] [--runs N] [--smoke]

The baseline is a revision without Powertools (``git archive`` of it into a temporary folder), run
by the same interpreter. Handlers with no model (the explorer's ``GET /api-explorer``, the front
function's ``GET /ping`` on the sagemaker engine), so the difference is not lost in model loading;
the wiring's cost does not depend on the model. Variants alternate run by run. "tracing" is the
working tree in a Lambda-like environment (``LAMBDA_TASK_ROOT`` set): the X-Ray SDK is imported and
botocore patched, as with active tracing on Lambda; its segments go to a closed UDP port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
loaded = time.perf_counter()
event = json.loads(sys.argv[2])
context = type("Context", (), {"function_name": "f", "memory_limit_in_mb": 1024, "aws_request_id": "r",
                               "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:f"})()
answer = module.handler(event, context)
done = time.perf_counter()
assert answer["statusCode"] in (200, 503), answer
print("RESULT " + json.dumps({"init": loaded - start, "first event": done - loaded}))
"""

HANDLERS = {
    "explorer": ("explorer_handler.py", "/api-explorer", {}),
    "front": ("handler.py", "/ping", {"IMSIM_ENGINE": "sagemaker", "IMSIM_SAGEMAKER_ENDPOINT": "e"}),
}


def event(path: str) -> dict:
    return {
        "resource": path,
        "path": path,
        "httpMethod": "GET",
        "headers": {"Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Host": ["abc.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": "GET", "stage": "prod", "requestId": "id"},
        "body": None,
        "isBase64Encoded": False,
    }


def run_once(tree: Path, handler: str, path: str, env: dict[str, str]) -> dict[str, float]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("IMSIM_", "POWERTOOLS_", "LAMBDA_"))}
    environment.update({"IMSIM_STORE": "off", "AWS_DEFAULT_REGION": "us-east-1", **env})
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree / "lambda_image" / handler), json.dumps(event(path))],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    process = time.perf_counter() - started
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {**result, "process": process}


def extract(revision: str, folder: Path, *, required: bool) -> bool:
    """The tree of ``revision`` into ``folder``; False when the clone lacks it and it is not required."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=required)
    if archive.returncode:
        return False
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return True


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--baseline", default="d66ad00", help="a revision without Powertools")
    options.add_argument("--runs", type=int, default=5)
    options.add_argument("--smoke", action="store_true", help="one run each; no baseline if the clone lacks it")
    args = options.parse_args()
    repeats = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory() as folder:
        tracing_env = {"LAMBDA_TASK_ROOT": str(ROOT / "lambda_image"), "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9"}
        variants = {"powertools": (ROOT, {}), "powertools+tracing": (ROOT, tracing_env)}
        if extract(args.baseline, Path(folder), required=not args.smoke):
            variants = {"baseline": (Path(folder), {}), **variants}
        else:
            print(f"baseline {args.baseline} is not in this clone (a shallow one?): measured without it")
        for name, (handler, path, env) in HANDLERS.items():
            results: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
            for _ in range(repeats):
                for variant, (tree, extra) in variants.items():
                    results[variant].append(run_once(tree, handler, path, {**env, **extra}))
            print(f"\n{name} handler, {repeats} fresh processes each, median (min-max) in ms")
            first = next(iter(variants))
            print(f"{'variant':<20}{'init':>22}{'first event':>22}{'whole process':>22}{'vs ' + first:>24}")
            reference = statistics.median(run["process"] for run in results[first])
            for variant, runs in results.items():
                cells = []
                for key in ("init", "first event", "process"):
                    values = [run[key] * 1000 for run in runs]
                    cells.append(f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})")
                cells.append(f"{statistics.median(run['process'] for run in runs) / reference:.2f}x")
                print(f"{variant:<20}" + "".join(f"{cell:>22}" for cell in cells[:3]) + f"{cells[3]:>24}")


if __name__ == "__main__":
    main()
