"""Shared fixtures: a tiny OpenCLIP model with random weights, and real HTTP servers on loopback."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup would stall ~47 s before failing
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import pytest

from tests.fakes.model import build_tiny_checkpoint
from tests.fakes.servers import LiveServer

SLOW_FIXTURES = {
    "baked": "runs the image build's bake command (torch load, ONNX export, reload checks)",
    "exported": "exports the tiny model's ONNX graphs, both precisions",
    "checked": "synthesizes every template variant and runs cdk-nag on each",
    "sagemaker_container": "starts the SageMaker container's server in a subprocess",
    "deployed": "runs the deployed explorer handler in a fresh interpreter",
    "hostile_server": "a server process that is sent every hostile input (tens of MB each)",
    "fuzz_server": "hypothesis and schemathesis send hundreds of requests per test",
    "load_flags": "a load run against a server process (seconds of load, SIGKILL, restart)",
    "busy_server": "holds requests in flight to fill the server's limit",
    "browser": "drives headless Chromium",
    "lambda_handler": "loads the deployed Lambda handler (bake-style model load, Powertools)",
    "api_run": "runs the deployed API handler in a fresh interpreter",
    "explorer_run": "runs the deployed explorer handler in a fresh interpreter",
}
"""Fixtures that take more than a few seconds: a test that uses one is marked ``slow``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny OpenCLIP config (512-d output) with random weights, saved as a checkpoint."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_settings(tiny_model, tmp_path_factory):
    from runtime.settings import Settings

    return Settings(
        model=tiny_model.name,
        pretrained="tiny-random-test",
        weights=str(tiny_model.weights),
        model_config_path=str(tiny_model.config),
        device="cpu",
        data_dir=str(tmp_path_factory.mktemp("data")),
    )


@pytest.fixture(scope="session")
def tiny_engine(tiny_settings):
    """Loaded once through the runtime's real loading code and shared by the servers below."""
    from runtime.engines import load_engine

    return load_engine(tiny_settings)


@pytest.fixture(scope="session")
def server(tiny_settings, tiny_engine):
    """The API on a real loopback HTTP server; URL inputs may reach 127.0.0.1 (test servers)."""
    settings = tiny_settings.replace(fetch_allow_networks=("127.0.0.1/32",))
    with LiveServer.start(settings, tiny_engine) as live:
        yield live


@pytest.fixture(scope="session")
def strict_server(tiny_settings, tiny_engine):
    """The API as deployed: no non-public address may be fetched."""
    with LiveServer.start(tiny_settings.replace(fetch_allow_networks=()), tiny_engine) as live:
        yield live


@pytest.fixture(scope="module")
def lambda_handler(tiny_settings):
    """The deployed Lambda handler (lambda_image/handler.py), loaded in this process on the tiny model."""
    from runtime import observability

    env = {
        "IMSIM_MODEL": tiny_settings.model,
        "IMSIM_PRETRAINED": tiny_settings.pretrained,
        "IMSIM_WEIGHTS": tiny_settings.weights,
        "IMSIM_MODEL_CONFIG_PATH": tiny_settings.model_config_path,
        "IMSIM_DATA_DIR": tiny_settings.data_dir,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        handler_file = Path(__file__).resolve().parents[1] / "lambda_image" / "handler.py"
        spec = importlib.util.spec_from_file_location("lambda_handler_under_test", handler_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    yield module.handler
    # Loading the handler set this process up as a Lambda function (EMF on, JSON logs): undo it.
    observability._emitting = False
    for name in ("runtime", "uvicorn"):
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = [], True
