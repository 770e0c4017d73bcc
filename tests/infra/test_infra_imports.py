"""The CDK app needs none of the runtime's serving packages: it takes what it shares with the runtime
from ``runtime/contract.py`` (and the model catalog), which are stdlib only.

A fresh interpreter, where importing FastAPI, NumPy, pydantic and the like raises ImportError, imports
``app.py`` and every module of ``infra/``, then synthesizes both backends through the app's own code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a fresh interpreter and two synths

BLOCKED = (
    "fastapi",
    "starlette",
    "numpy",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "PIL",
    "torch",
    "open_clip",
    "onnxruntime",
    "aws_lambda_powertools",
)
"""The runtime's serving packages: the CDK app must import none of them (not even to swallow the error)."""

SCRIPT = """
import importlib
import importlib.abc
import os
import pkgutil
import sys

out, blocked, synth, *extra = sys.argv[1:]
os.chdir(out)  # before the CDK starts its node process, which writes app.py's cdk.out/ in its own folder
BLOCKED = set(blocked.split(","))
attempts = []


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"the CDK app must not import {name} (take the fact from runtime/contract.py)")
        return None


sys.meta_path.insert(0, Blocked())
try:
    for name in extra:
        importlib.import_module(name)
    import app  # the CDK entry point
    import infra
    import infra.builder

    for module in pkgutil.iter_modules(infra.__path__):
        importlib.import_module(f"infra.{module.name}")
    if synth == "synth":
        assert app.main(["-c", "backend=sagemaker", "-c", "auth=API_KEY"]) == 0
        infra.builder.build_app({"backend": "lambda"}, outdir=os.path.join(out, "lambda")).synth()
finally:
    if attempts:  # raised, whether or not someone caught the ImportError
        print("BLOCKED IMPORTS: " + ", ".join(attempts), file=sys.stderr)
        sys.exit(3)
print("OK")
"""


def run_isolated(out: Path, *, synth: bool, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "CDK_OUTDIR"}
    environment |= {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", SCRIPT, str(out), ",".join(BLOCKED), "synth" if synth else "import", *extra]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


def test_the_cdk_app_imports_and_synthesizes_without_the_runtime_packages(tmp_path):
    result = run_isolated(tmp_path, synth=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("OK")
    assert (tmp_path / "cdk.out" / "ImageSimilarity.template.json").exists()
    assert (tmp_path / "lambda" / "ImageSimilarity.template.json").exists()


@pytest.mark.parametrize(("module", "package"), [("runtime.settings", "pydantic"), ("runtime.api.bodies", "fastapi")])
def test_the_check_fails_when_the_app_imports_a_runtime_module_that_needs_them(tmp_path, module, package):
    result = run_isolated(tmp_path, synth=False, extra=(module,))
    assert result.returncode != 0
    assert f"BLOCKED IMPORTS: {package}" in result.stderr
