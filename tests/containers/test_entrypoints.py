"""The Lambda handler, the SageMaker container and its front engine, the Dockerfiles and the bake step."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.engines.model_folder import settings_for_model_dir
from runtime.engines.sagemaker_engine import SageMakerEngine
from runtime.settings import Settings
from tests.fakes.images import b64, image_bytes
from tests.fakes.lambda_events import LambdaContext, proxy_event
from tests.fakes.servers import LiveServer

ROOT = Path(__file__).resolve().parents[2]


def test_lambda_handler_answers_single_and_pair_mode(lambda_handler, server):
    single = lambda_handler(proxy_event("/image-similarity", {"img": b64(image_bytes(1))}), LambdaContext())
    assert single["statusCode"] == 200, single
    result = json.loads(single["body"])["result"]
    direct = server.post("/image-similarity", {"img": b64(image_bytes(1))}).json()["result"]
    assert np.allclose(result, direct, atol=1e-6)

    pair = lambda_handler(
        proxy_event("/text_similarity", {"img_1": b64(image_bytes(1)), "img_2": b64(image_bytes(1))}),
        LambdaContext(),
    )
    assert pair["statusCode"] == 200
    assert json.loads(pair["body"])["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_lambda_handler_reports_errors_with_the_error_shape(lambda_handler):
    answer = lambda_handler(proxy_event("/image-similarity", {"img": "!!"}), LambdaContext())
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["code"] == "invalid_base64"


@pytest.fixture(scope="module")
def sagemaker_container(tiny_settings, tiny_engine):
    with LiveServer.start(tiny_settings, tiny_engine, sagemaker=True) as live:
        yield live


def test_sagemaker_container_answers_ping_and_invocations(sagemaker_container, server):
    assert sagemaker_container.client.get("/ping").status_code == 200
    body = {"inputs": [{"img": b64(image_bytes(2))}, {"text": "a cat"}]}
    answer = sagemaker_container.post("/invocations", body)
    assert answer.status_code == 200, answer.text
    expected = server.post("/image-similarity", body).json()["results"]
    assert np.allclose(answer.json()["results"], expected, atol=1e-6)


def test_invocations_is_not_on_the_public_api(server):
    assert server.post("/invocations", {"text": "x"}).status_code == 404


class SageMakerRuntimeOverHttp:
    """Stands in for boto3's sagemaker-runtime client: forwards InvokeEndpoint to a real container."""

    def __init__(self, container: LiveServer):
        self.container = container
        self.calls = 0

    def invoke_endpoint(self, EndpointName, ContentType, Accept, Body):  # noqa: N803 (boto3's names)
        self.calls += 1
        response = self.container.post("/invocations", Body)
        response.raise_for_status()
        import io

        return {"Body": io.BytesIO(response.content), "ContentType": "application/json"}


def test_front_engine_through_the_container_matches_the_local_engine(
    sagemaker_container, tiny_settings, tiny_engine, server
):
    """The front function (no model) prepares images and lets the container embed them."""
    front_settings = Settings(
        engine="sagemaker",
        sagemaker_endpoint="image-similarity",
        image_size=tiny_engine.image_size,
        model=tiny_settings.model,
        pretrained=tiny_settings.pretrained,
    )
    client = SageMakerRuntimeOverHttp(sagemaker_container)
    front = SageMakerEngine(front_settings, client=client)
    with LiveServer.start(front_settings, front) as front_api:
        body = {"inputs": [{"img": b64(image_bytes(3, size=(300, 200), fmt="JPEG"))}, {"text": "a red square"}]}
        via_front = front_api.post("/image-similarity", body)
        assert via_front.status_code == 200, via_front.text
    direct = server.post("/image-similarity", body).json()["results"]
    assert np.allclose(via_front.json()["results"], direct, atol=1e-5)
    assert via_front.json()["model_version"] == tiny_settings.model_version
    assert client.calls == 2  # one call for the images, one for the texts


class BusyEndpoint:
    """The error botocore raises when the container answers 503 (its in-flight limit)."""

    def invoke_endpoint(self, **_):
        from botocore.exceptions import ClientError

        response = {"Error": {"Code": "ModelError", "Message": "busy"}, "OriginalStatusCode": 503}
        raise ClientError(response, "InvokeEndpoint")


def test_busy_endpoint_is_a_retryable_503(tiny_settings):
    settings = Settings(engine="sagemaker", sagemaker_endpoint="e", image_size=32, micro_batching=False)
    with LiveServer.start(settings, SageMakerEngine(settings, client=BusyEndpoint())) as front_api:
        response = front_api.post("/image-similarity", {"text": "a cat"})
    assert response.status_code == 503
    assert response.json()["code"] == "overloaded"


@pytest.mark.slow
def test_front_engine_needs_no_torch():
    code = "import sys; import runtime.api.app, runtime.engines.sagemaker_engine; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --- Dockerfiles -------------------------------------------------------------------------------

DOCKERFILES = [ROOT / "lambda_image" / "Dockerfile", ROOT / "sagemaker_image" / "Dockerfile"]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerignore_allows(relative: str) -> bool:
    """Our .dockerignore excludes everything, then re-includes named folders."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        if body == "**" or relative == body or relative.startswith(body + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_file_exists_in_the_build_context(dockerfile):
    copies = [args for op, args in dockerfile_instructions(dockerfile) if op == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            path = ROOT / source
            assert path.exists(), f"{dockerfile.parent.name}: COPY {source} is not in the build context"
            assert dockerignore_allows(source.rstrip("/")), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_run_step_installs_packages_or_calls_a_tested_project_script(dockerfile):
    for op, args in dockerfile_instructions(dockerfile):
        if op != "RUN":
            continue
        steps = [step.strip() for step in args.split("&&")]
        for step in steps:
            assert step.startswith(("pip install", "python -m runtime.bake")), step


@pytest.fixture(scope="module")
def baked(tiny_settings, tmp_path_factory) -> Path:
    """The image build's bake command, run offline against the tiny checkpoint."""
    out = tmp_path_factory.mktemp("baked") / "model"
    command = [
        *(sys.executable, "-m", "runtime.bake", "--model", tiny_settings.model, "--pretrained", "tiny-baked"),
        *("--weights", tiny_settings.weights, "--model-config", tiny_settings.model_config_path, "--out", str(out)),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "baked tiny-test-clip/tiny-baked" in done.stdout
    return out


def lambda_image_model_files() -> list[str]:
    """What the Lambda image's model stage copies out of the bake stage."""
    copies = [a for op, a in dockerfile_instructions(DOCKERFILES[0]) if op == "COPY" and "--from=bake" in a]
    return [p for copy in copies for p in copy.split()[1:-1]]


def test_bake_step_writes_a_folder_that_serves(baked):
    manifest = json.loads((baked / "manifest.json").read_text())
    assert manifest["dimension"] == 512
    settings = settings_for_model_dir(Settings.from_env({"IMSIM_MODEL_DIR": str(baked)}))
    assert settings.model_version == "tiny-test-clip/tiny-baked"
    assert Path(settings.weights).exists()
    assert min(manifest["onnx_cosine_vs_torch"].values()) > 0.99
    sources = lambda_image_model_files()
    assert sources
    for source in sources:
        assert (baked / Path(source).relative_to("/opt/model")).exists(), source


LAMBDA_AS_DEPLOYED = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", "lambda_image/handler.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
event = json.loads(sys.stdin.read())
context = type("Context", (), {"function_name": "f", "memory_limit_in_mb": 3008, "aws_request_id": "r",
                               "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:f"})()
answer = module.handler(event, context)
print(json.dumps({"answer": answer, "torch_imported": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_lambda_handler_as_deployed_serves_onnx_without_torch(baked, tmp_path, precision):
    """Only the files the Lambda image copies, the image's environment, a REST API event."""
    folder = tmp_path / "opt-model"
    folder.mkdir()
    for source in lambda_image_model_files():
        shutil.copy(baked / Path(source).name, folder)
    env = {
        **os.environ,
        "IMSIM_ENGINE": "onnx",
        "IMSIM_MODEL_DIR": str(folder),
        "IMSIM_ONNX_PRECISION": precision,
        "IMSIM_STORE": "off",
        "HF_HUB_OFFLINE": "1",
    }
    event = proxy_event("/image-similarity", {"img_1": b64(image_bytes(1)), "text_2": "a cat"})
    done = subprocess.run(
        [sys.executable, "-c", LAMBDA_AS_DEPLOYED],
        input=json.dumps(event),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_imported"] is False
    assert result["answer"]["statusCode"] == 200, result["answer"]
    body = json.loads(result["answer"]["body"])
    assert 0 <= body["similarity"] <= 1 and body["model_version"] == "tiny-test-clip/tiny-baked"


def test_front_engine_splits_a_batch_that_would_exceed_the_endpoint_payload_limit(sagemaker_container, tiny_engine):
    """Noise images do not compress: 32 of them (224 px) are over 6 MB as one payload."""
    from runtime.engines.sagemaker_engine import PAYLOAD_BUDGET, payload_chunks

    rng = np.random.default_rng(0)
    big = [{"img": b64(rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes())} for _ in range(32)]
    chunks = payload_chunks(big)
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == 32
    assert all(len(json.dumps({"inputs": c})) < PAYLOAD_BUDGET + 1000 for c in chunks)

    settings = Settings(engine="sagemaker", sagemaker_endpoint="e", image_size=tiny_engine.image_size)
    client = SageMakerRuntimeOverHttp(sagemaker_container)
    front = SageMakerEngine(settings, client=client, payload_budget=1)  # one image per call
    pixels = rng.integers(0, 256, size=(6, tiny_engine.image_size, tiny_engine.image_size, 3), dtype=np.uint8)
    vectors = front.encode_images(pixels)
    assert client.calls == 6
    assert np.allclose(vectors, tiny_engine.encode_images(pixels), atol=1e-5)


@pytest.mark.parametrize(
    ("model", "dimension", "resize"), [("ViT-B-32-SigLIP2-256", 768, "squash"), ("MobileCLIP2-S0", 512, "shortest")]
)
def test_the_front_engine_takes_a_catalogued_models_dimension_and_preprocessing(model, dimension, resize):
    engine = SageMakerEngine(Settings(engine="sagemaker", sagemaker_endpoint="e", model=model, micro_batching=False))
    assert (engine.dimension, engine.image_size, engine.spec.resize) == (dimension, 256, resize)
    unlisted = Settings(engine="sagemaker", sagemaker_endpoint="e", model="custom", dimension=1024, image_size=96)
    assert (SageMakerEngine(unlisted).dimension, SageMakerEngine(unlisted).image_size) == (1024, 96)
