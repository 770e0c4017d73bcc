"""runtime/contract.py holds what the runtime and the CDK app agree on; both sides keep to it.

The CDK app's side is in tests/infra (the templates, and test_infra_imports.py: the app imports the
contract, not the runtime's packages); here, the runtime's: the settings the stacks may write exist,
the bodies read as uploads are exactly the binary media types, the metrics written are the ones named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import contract
from runtime.api.bodies import BINARY, JSON, MULTIPART, TEXT, body_kind
from runtime.errors import SettingsError
from runtime.settings import Settings, env_name, refuse_unknown_names, setting_names

ROOT = Path(__file__).resolve().parents[1]


def test_the_settings_a_stack_may_write_are_runtime_settings():
    assert len(set(contract.DEPLOYED_SETTINGS)) == len(contract.DEPLOYED_SETTINGS)
    assert set(contract.DEPLOYED_SETTINGS) <= set(setting_names())
    assert Settings.model_config["env_prefix"] == contract.ENV_PREFIX
    for name in setting_names():
        assert env_name(name) == contract.setting_variable(name) == contract.ENV_PREFIX + name.upper()


def test_the_runtime_knows_every_variable_a_stack_may_write():
    refuse_unknown_names({contract.setting_variable(name): "x" for name in contract.DEPLOYED_SETTINGS})
    with pytest.raises(SettingsError, match="IMSIM_VECTOR_BUCKETS: not a setting"):
        refuse_unknown_names({contract.setting_variable("vector_buckets"): "x"})


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("image/png", BINARY),
        ("IMAGE/JPEG; q=1", BINARY),
        ("image/x-anything", BINARY),
        ("application/octet-stream", BINARY),
        ("multipart/form-data; boundary=x", MULTIPART),
        (contract.JSON_MEDIA_TYPE, JSON),
        ("application/imagex", JSON),
        ("text/plain", TEXT),
        (None, JSON),
    ],
)
def test_the_runtime_reads_as_uploads_exactly_the_binary_media_types(content_type, kind):
    assert body_kind(content_type) == kind
    media_type = (content_type or "").split(";")[0].strip().lower()
    declared = any(contract.matches_media_type(media_type, pattern) for pattern in contract.UPLOAD_MEDIA_TYPES)
    assert declared == (kind in (BINARY, MULTIPART))  # what API Gateway passes as binary is read as an upload


def test_matches_media_type():
    assert contract.matches_media_type("image/png", "image/*")
    assert contract.matches_media_type("image/png", "image/png")
    assert not contract.matches_media_type("imagery/png", "image/*")
    assert not contract.matches_media_type("application/octet-streams", "application/octet-stream")


def test_the_deployed_powertools_environment_is_the_contracts():
    from infra.monitoring_stack import POWERTOOLS_ENVIRONMENT

    assert POWERTOOLS_ENVIRONMENT == {
        contract.SERVICE_NAME_VARIABLE: contract.SERVICE_NAME,
        contract.METRICS_NAMESPACE_VARIABLE: contract.METRICS_NAMESPACE,
        contract.LOG_LEVEL_VARIABLE: contract.DEFAULT_LOG_LEVEL,
    }


EVERY_METRIC = """
from runtime import observability


class Added:
    pass


class Duplicate:
    match, exact = object(), False


def work(event, context):
    observability.record_request("/ping", "url_unreachable", 502, 1.0)
    observability.record_embedded(images=2, texts=1)
    observability.record_library_adds([Added(), Duplicate()])
    observability.record_import_progress(imported=3, duplicates=1, failed=0)
    return "done"


context = type("Context", (), {"function_name": "api", "memory_limit_in_mb": 1024, "aws_request_id": "r1",
                               "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:api"})()
print("answer", observability.lambda_entry(work)({}, context))
"""


@pytest.mark.slow  # a fresh process, set up as a Lambda function's
def test_the_runtime_writes_the_contracts_metrics_in_its_namespace():
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "IMSIM_"))}
    done = subprocess.run(
        [sys.executable, "-c", EVERY_METRIC], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "answer done"
    documents = [json.loads(line) for line in done.stdout.splitlines() if '"_aws"' in line]
    directives = [directive for document in documents for directive in document["_aws"]["CloudWatchMetrics"]]
    assert {directive["Namespace"] for directive in directives} == {contract.METRICS_NAMESPACE}
    written = {metric["Name"] for directive in directives for metric in directive["Metrics"]}
    assert written - {"ColdStart"} == set(contract.METRIC_NAMES)
    ours = [directive for directive in directives if directive["Metrics"][0]["Name"] != "ColdStart"]
    dimensions = {name for directive in ours for names in directive["Dimensions"] for name in names}
    assert dimensions == {contract.SERVICE_DIMENSION, contract.ROUTE_DIMENSION, contract.OUTCOME_DIMENSION}
    assert all(document.get(contract.SERVICE_DIMENSION) == contract.SERVICE_NAME for document in documents)
