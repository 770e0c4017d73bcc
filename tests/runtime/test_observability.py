"""Logs of the local server (text by default, JSON lines with ``IMSIM_LOG_FORMAT=json``) and span()."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from runtime import observability
from runtime.settings import Settings
from tests.fakes.images import b64, image_bytes
from tests.runtime.test_cli import start, wait_until_up

SECRET_TEXT = "a photo of the secret dog"


def serve_and_stop(tiny_settings, log_format: str | None) -> tuple[str, str]:
    """Starts ``python -m runtime serve`` with the tiny model, makes three requests, stops it."""
    model = ("--model", tiny_settings.model, "--pretrained", tiny_settings.pretrained)
    files = ("--weights", tiny_settings.weights, "--model-config", tiny_settings.model_config_path)
    env = {"IMSIM_STORE": "off", **({"IMSIM_LOG_FORMAT": log_format} if log_format else {})}
    process, url = start(*model, *files, env_extra=env)
    try:
        wait_until_up(process, url)
        image = b64(image_bytes(4))
        assert httpx.post(url + "/image-similarity", json={"img_1": image, "text_2": SECRET_TEXT}).status_code == 200
        assert httpx.post(url + "/image-similarity", json={"img": "!!"}).status_code == 400
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    assert image[:40] not in stdout + stderr and SECRET_TEXT not in stdout + stderr
    return stdout, stderr


@pytest.mark.slow
def test_local_server_logs_json_lines_with_the_setting(tiny_settings):
    stdout, stderr = serve_and_stop(tiny_settings, "json")
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]  # every line is JSON
    assert not [line for line in stdout.splitlines() if line.strip() and "_aws" in line]  # no EMF off Lambda
    requests = [line for line in lines if "route" in line]
    seen = [(line["route"], line["method"], line["status"], line.get("code")) for line in requests]
    *pings, answered, refused = seen  # wait_until_up pings until the server is up
    assert pings and set(pings) == {("/ping", "GET", 200, None)}
    assert (answered, refused) == (
        ("/image-similarity", "POST", 200, None),
        ("/image-similarity", "POST", 400, "invalid_base64"),
    )
    for line in requests:
        assert line["service"] == "image-similarity" and line["level"] == "INFO"
        assert len(line["request_id"]) == 32 and line["latency_ms"] > 0
    assert any("Uvicorn running" in line["message"] for line in lines)  # uvicorn's own lines too


@pytest.mark.slow
def test_local_server_logs_text_by_default(tiny_settings):
    stdout, stderr = serve_and_stop(tiny_settings, None)
    request_lines = [line for line in stderr.splitlines() if "runtime.requests" in line]
    assert any("POST /image-similarity 400" in line and "(invalid_base64)" in line for line in request_lines)
    assert not any(line.lstrip().startswith("{") for line in stderr.splitlines() + stdout.splitlines())


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="log_format: 'xml'"):
        observability.configure_logs("xml")
    assert Settings.from_env({"IMSIM_LOG_FORMAT": "json"}).log_format == "json"


def test_span_is_a_shared_no_op_without_tracing():
    assert observability.tracer is None  # tests do not run in a Lambda environment
    assert observability.span("decode") is observability.span("embed")
    with observability.span("fetch"):
        pass


def test_metrics_are_not_emitted_off_lambda():
    """A process that no ``lambda_entry`` set up (the local server) prints no EMF and keeps no metrics."""
    code = """
from runtime import observability
observability.record_request("/ping", "ok", 200, 1.0)
observability.record_embedded(images=1, texts=0)
observability.record_import_progress(imported=3, duplicates=1, failed=0)
print(observability.metrics.metric_set)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "{}\n"


def test_import_progress_is_an_emf_document_in_a_lambda_process(tmp_path):
    """What the import's function publishes: run in a fresh process through lambda_entry."""
    code = """
from runtime.observability import lambda_entry, record_import_progress

def work(event, context):
    record_import_progress(imported=480, duplicates=15, failed=5)
    return {"ok": True}

context = type("Context", (), {"function_name": "imports", "memory_limit_in_mb": 1024, "aws_request_id": "r1",
                               "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:imports"})()
print("answer", lambda_entry(work)({}, context))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert lines[-1] == "answer {'ok': True}"
    documents = [json.loads(line) for line in lines[:-1] if '"_aws"' in line]
    work = [d for d in documents if "ImportedImages" in d]
    assert len(work) == 1
    assert (work[0]["ImportedImages"], work[0]["ImportDuplicates"], work[0]["ImportFailures"]) == (
        [480.0],
        [15.0],
        [5.0],
    )
    assert work[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ImageSimilarity"
