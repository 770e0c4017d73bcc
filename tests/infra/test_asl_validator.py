"""Every synthesized state machine checked by a real Amazon States Language validator: the npm package
``asl-validator`` (4.x knows Distributed Map: ItemReader, ItemBatcher, ResultWriter, ProcessorConfig),
installed by ``scripts/setup.sh`` from package.json. cfn-lint checks the same definitions with its own
schema (test_templates.py); the two disagree on what they know, so both run.

CloudFormation's ``DefinitionSubstitutions`` are filled with values of the shape AWS substitutes
(an ARN, a bucket name, a number), so the validator's ARN and path checks run as on the real text.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.test_templates import synthesize

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
SUBSTITUTES = {
    "WorkerArn": "arn:aws:lambda:us-east-1:123456789012:function:ImageSimilarity-ImportWorker",
    "ResultsBucket": "image-similarity-import-results",
    "MaxConcurrency": "8",
    "Partition": "aws",
}


@pytest.fixture(scope="module")
def validator() -> Path:
    if not VALIDATOR.exists():
        if os.environ.get("CI"):
            pytest.fail("asl-validator is not installed: scripts/setup.sh installs it (npm ci)")
        pytest.skip("asl-validator is not installed: run scripts/setup.sh")
    return VALIDATOR


def validate(validator: Path, definition: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "definition.asl.json"
    path.write_text(definition)
    return subprocess.run([str(validator), "--json-path", str(path)], capture_output=True, text=True, timeout=60)


def substituted(machine: dict) -> str:
    text = machine["Properties"]["DefinitionString"]
    names = set(machine["Properties"].get("DefinitionSubstitutions", {}))
    assert names == set(SUBSTITUTES), names
    for name, value in SUBSTITUTES.items():
        text = text.replace("${" + name + "}", value)
    return text


@pytest.mark.parametrize("backend", ["lambda", "sagemaker"])
def test_every_synthesized_state_machine_is_valid_asl(validator, backend, tmp_path):
    synth = synthesize({"backend": backend}, tmp_path / "cdk")
    machines = [
        body
        for template in synth.all_templates()
        for body in template["Resources"].values()
        if body["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    assert machines
    for machine in machines:
        done = validate(validator, substituted(machine), tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_refuses_what_step_functions_refuses(validator, tmp_path):
    """Two maps whose inner states share a name: state names are unique across a whole state machine."""
    inner = {"StartAt": "Work", "States": {"Work": {"Type": "Pass", "End": True}}}
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Map", "ItemProcessor": inner, "Next": "B"},
            "B": {"Type": "Map", "ItemProcessor": inner, "End": True},
        },
    }
    done = validate(validator, json.dumps(definition), tmp_path)
    assert done.returncode != 0 and "DUPLICATE_STATE_NAMES" in done.stdout + done.stderr
