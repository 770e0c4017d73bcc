"""The synthesized templates held to AWS's own machine-readable contracts, not to our reading of AWS.

- SageMaker hosting: the endpoint's host AMI (``InferenceAmiVersion``, an enum of botocore's SageMaker
  model whose documentation names each AMI's NVIDIA driver and CUDA) runs the CUDA of the torch the
  image pins (the installed torch: the same pin); the accepted instance types are the model's.
- Step Functions: a batch's worst case (every attempt to its timeout, every backoff at its longest)
  fits its child execution type's limit; ResultWriter's prefix reads the context object only.
- API Gateway: the access log format is valid JSON whatever the error message holds.

IAM is checked against the IAM service authorization data in test_iam_contracts.py, the ASL by
asl-validator in test_asl_validator.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
import torch

from infra.api_stack import ACCESS_LOG_FORMAT
from infra.sagemaker_hosting import (
    GPU_FAMILIES,
    IMAGE_CUDA_ARCHS,
    IMAGE_TORCH_CUDA,
    family_of,
    gpu_instance_types,
    hosting_instance_types,
    image_runs_on,
    is_gpu_family,
)
from runtime.libraries.imports.sources import MAX_MANIFEST_LINE_BYTES
from tests.infra.test_templates import _only, synthesize

pytestmark = pytest.mark.slow  # two synths

ROOT = Path(__file__).resolve().parents[2]
EXECUTION_LIMIT_S = {"EXPRESS": 5 * 60, "STANDARD": 365 * 24 * 3600}
"""Step Functions' maximum duration of an execution, by type."""
STEP_FUNCTIONS_MAX_INPUT_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def sagemaker(tmp_path_factory):
    return synthesize({"backend": "sagemaker"}, tmp_path_factory.mktemp("contracts"))


@pytest.fixture(scope="module")
def sagemaker_model():
    return botocore.session.get_session().get_service_model("sagemaker")


# --- SageMaker: the GPU endpoint on its GPU --------------------------------------------------------


def ami_cuda_versions(model) -> dict[str, tuple[int, int]]:
    """AMI version -> the CUDA it brings, as the botocore model documents ``InferenceAmiVersion``
    (``<dt>name</dt><dd>... CUDA version: 13.0 ...</dd>``); the Neuron AMI has none."""
    documentation = model.shape_for("ProductionVariant").members["InferenceAmiVersion"].documentation
    versions = {}
    for name, details in re.findall(r"<dt>([^<]+)</dt>\s*<dd>(.*?)</dd>", documentation, re.S):
        found = re.search(r"CUDA version:\s*(\d+)\.(\d+)", re.sub(r"<[^>]+>", " ", details))
        if found:
            versions[name.strip()] = (int(found[1]), int(found[2]))
    assert set(versions) <= set(model.shape_for("ProductionVariantInferenceAmiVersion").enum)
    return versions


def pinned(text: str, package: str) -> str:
    return re.search(rf"{package}==([0-9.]+)", text)[1]


def test_the_sagemaker_image_pins_the_torch_these_tests_run(sagemaker):
    dockerfile = (ROOT / "sagemaker_image" / "Dockerfile").read_text()
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("torch", "torchvision"):
        assert pinned(dockerfile, package) == pinned(requirements, package), package
    assert torch.__version__.split("+")[0] == pinned(dockerfile, "torch")
    assert "--index-url" not in dockerfile.split("torch==", 1)[1].split("&&", 1)[0]  # PyPI's own (CUDA) build
    assert torch.version.cuda == IMAGE_TORCH_CUDA
    assert tuple(torch._C._cuda_getArchFlags().split()) == IMAGE_CUDA_ARCHS


def test_the_endpoint_runs_on_an_ami_whose_driver_runs_the_images_cuda(sagemaker, sagemaker_model):
    backend = sagemaker.template("Backend")
    (variant,) = _only(backend, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    ami = variant["InferenceAmiVersion"]
    assert ami in sagemaker_model.shape_for("ProductionVariantInferenceAmiVersion").enum
    image_cuda = tuple(int(part) for part in torch.version.cuda.split("."))
    assert ami_cuda_versions(sagemaker_model)[ami] >= image_cuda, f"{ami} cannot run CUDA {torch.version.cuda}"
    # cuda, not auto: a host that cannot run the image fails start-up (/ping), not serves on its CPU
    container = _only(backend, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert container["Environment"]["IMSIM_DEVICE"] == "cuda"


def test_the_botocore_documentation_names_each_gpu_amis_cuda(sagemaker_model):
    versions = ami_cuda_versions(sagemaker_model)
    assert versions["al2-ami-sagemaker-inference-gpu-2"] == (12, 2)  # driver 535: the AMIs a CUDA 13 build cannot use
    assert versions["al2-ami-sagemaker-inference-gpu-3-1"] == (12, 4)
    assert max(versions.values()) >= (13, 0)


def test_every_gpu_family_sagemaker_hosts_is_decided(sagemaker_model):
    """A family AWS adds to the enum fails here until GPU_FAMILIES says what GPU it has."""
    families = {family_of(t) for t in sagemaker_model.shape_for("ProductionVariantInstanceType").enum}
    assert {family for family in families if is_gpu_family(family)} == set(GPU_FAMILIES)
    assert "p3dn" not in families  # a training type, never a hosting one


def test_the_instance_type_parameter_allows_exactly_the_hosting_gpu_types_the_image_runs_on(sagemaker):
    allowed = sagemaker.root["Parameters"]["SageMakerInstanceType"]["AllowedValues"]
    assert allowed == list(gpu_instance_types())
    assert set(allowed) <= set(hosting_instance_types())
    assert all(image_runs_on(GPU_FAMILIES[family_of(t)]) for t in allowed)
    assert "ml.g4dn.xlarge" in allowed and "ml.p3.2xlarge" not in allowed  # a V100: no CUDA 13 kernels
    assert not any(t.startswith("ml.p6e-gb200") for t in allowed)  # an Arm host; the image is x86_64


def test_sagemaker_arns_are_never_built_from_a_name(sagemaker):
    """SageMaker's ARNs are lower case and IAM compares case-sensitively: only the endpoint's own Ref."""
    for name, template in sagemaker.templates_by_name().items():
        assert ":sagemaker:" not in json.dumps(template), name


# --- Step Functions: imports that finish --------------------------------------------------------


def distributed_maps(template: dict) -> list[dict]:
    machine = _only_resource(template, "AWS::StepFunctions::StateMachine")
    states = json.loads(machine["Properties"]["DefinitionString"])["States"]
    return [state for state in states.values() if state.get("ItemProcessor", {}).get("ProcessorConfig")]


def _only_resource(template: dict, resource_type: str) -> dict:
    (found,) = [body for body in template["Resources"].values() if body["Type"] == resource_type]
    return found


def worst_case_s(task: dict, attempt_s: float) -> float:
    """Every attempt runs to its bound, every retry waits its longest (FULL jitter waits at most the
    computed interval); errors matched by different retriers each use up their own attempts."""
    total = attempt_s
    for retrier in task.get("Retry", []):
        interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
        ceiling = retrier.get("MaxDelaySeconds", float("inf"))
        for attempt in range(retrier.get("MaxAttempts", 3)):
            total += min(interval * rate**attempt, ceiling) + attempt_s
    return total


def test_a_batch_worst_case_fits_its_child_execution_type(sagemaker):
    imports = sagemaker.nested["Imports"]
    worker = _only_resource(imports, "AWS::Lambda::Function")["Properties"]
    for state in distributed_maps(imports):
        limit = EXECUTION_LIMIT_S[state["ItemProcessor"]["ProcessorConfig"]["ExecutionType"]]
        for task in state["ItemProcessor"]["States"].values():
            assert "TimeoutSeconds" in task, "a task without a timeout has no worst case"
            assert task["TimeoutSeconds"] >= worker["Timeout"], "Step Functions would give up on a running worker"
            assert worst_case_s(task, task["TimeoutSeconds"]) <= limit
    # The worker's lease wait is inside its own timeout.
    assert float(worker["Environment"]["Variables"]["IMSIM_LIBRARY_WAIT_S"]) < worker["Timeout"]


def test_the_worst_case_check_refuses_what_was_deployed_before():
    """EXPRESS children, the worker's 240 s per attempt and six retries: about 31 minutes, past 5."""
    task = {
        "Retry": [
            {
                "ErrorEquals": ["StoreBusy"],
                "IntervalSeconds": 2,
                "BackoffRate": 2,
                "MaxAttempts": 6,
                "MaxDelaySeconds": 60,
            }
        ]
    }
    assert worst_case_s(task, 240) > EXECUTION_LIMIT_S["EXPRESS"]
    assert worst_case_s({}, 240) < EXECUTION_LIMIT_S["EXPRESS"]


def test_result_writer_prefix_reads_only_the_context_object(sagemaker):
    """Whether ``Prefix.$`` is read against the state's input or its results, ``$$`` means the same."""
    for state in distributed_maps(sagemaker.nested["Imports"]):
        prefix = state["ResultWriter"]["Parameters"]["Prefix.$"]
        paths = re.findall(r"\$+[.A-Za-z_]*", prefix)
        assert paths and all(path.startswith("$$.") for path in paths), prefix


def test_batches_fit_the_execution_input_and_a_manifest_line_fits_a_batch(sagemaker):
    for state in distributed_maps(sagemaker.nested["Imports"]):
        batcher = state["ItemBatcher"]
        batch_input = json.dumps({key: "x" * 128 for key in batcher["BatchInput"]})  # ids, names: 128 at most
        wrapping = len('{"Items":[],"BatchInput":}') + len(batch_input)
        assert batcher["MaxInputBytesPerBatch"] + wrapping <= STEP_FUNCTIONS_MAX_INPUT_BYTES
        assert MAX_MANIFEST_LINE_BYTES < batcher["MaxInputBytesPerBatch"]


def test_the_state_machine_manages_its_child_executions_in_both_arn_forms(sagemaker):
    imports = sagemaker.nested["Imports"]
    statements = [
        statement
        for name, body in imports["Resources"].items()
        if body["Type"] == "AWS::IAM::Policy" and name.startswith("StateMachineRole")
        for statement in body["Properties"]["PolicyDocument"]["Statement"]
    ]
    (manage,) = [s for s in statements if s.get("Sid") == "ManageChildExecutions"]
    tails = sorted(json.dumps(resource)[-20:] for resource in manage["Resource"])
    assert len(tails) == 2 and any("imports/*" in t for t in tails) and any("imports:*" in t for t in tails)


# --- API Gateway -------------------------------------------------------------------------------------


def test_the_access_log_line_is_json_whatever_the_error_message_holds():
    message = 'Invalid "key" \\ value'
    line = ACCESS_LOG_FORMAT.replace("$context.error.messageString", json.dumps(message))
    line = re.sub(r"\$context\.[A-Za-z.]+", "-", line)
    assert json.loads(line)["error"] == message


def test_the_too_large_answer_names_the_limit_a_body_meets(sagemaker):
    api = sagemaker.nested["Api"]
    body = json.dumps(api)
    assert "6 MB" in body and "Lambda" in body


# --- storage that outlives the switches ----------------------------------------------------------------


def test_a_template_for_a_region_without_s3_vectors_makes_the_storage_conditional(tmp_path):
    synth = synthesize({"backend": "lambda", "libraries": False}, tmp_path)
    assert synth.nested_conditions()["LibraryStorage"] == "LibrariesOn"
    assert synth.root["Parameters"]["Libraries"]["Default"] == "no"
