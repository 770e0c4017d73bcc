"""Context flags: defaults, parsing, and bad values that must stop synth naming the flag."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import FLAG_DEFAULTS, ConfigError, check_flag_names, load_config
from runtime.engines.catalog import find

ROOT = Path(__file__).resolve().parents[2]


def config_of(**flags):
    return load_config(flags.get)


def test_cdk_json_holds_every_flag_default():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert {name: context[name] for name in FLAG_DEFAULTS} == FLAG_DEFAULTS
    assert context["@aws-cdk/core:target-partitions"] == ["aws", "aws-cn"]


def test_defaults():
    config = config_of()
    assert (config.backend, config.auth, config.explorer, config.libraries) == ("lambda", "AWS_IAM", True, True)
    assert config.sagemaker_instance_type == "ml.g4dn.xlarge"
    assert (config.throttle_rate, config.throttle_burst) == (10, 20)
    assert config.s3_read_buckets == ()
    assert config.provisioned_concurrency == 0
    assert config.model_version == "ViT-B-32/laion2b_s34b_b79k" and config.image_size == 224


def test_cli_strings_are_parsed():
    """The CDK CLI passes every -c value as a string."""
    config = config_of(
        explorer="false",
        lambda_memory="3008",
        throttle_rate="2.5",
        s3_read_buckets="a-b, c.d ,",
        model="ViT-B-32-256/datacomp_s34b_b86k",
    )
    assert config.explorer is False and config.lambda_memory == 3008 and config.throttle_rate == 2.5
    assert config.s3_read_buckets == ("a-b", "c.d")
    assert config.image_size == find("ViT-B-32-256", "datacomp_s34b_b86k").image_size == 256


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("backend", "ec2", "lambda | sagemaker"),
        ("auth", "COGNITO", "AWS_IAM | API_KEY | NONE"),
        ("waf", "on", "true | false | yes | no"),
        ("explorer", "maybe", "true | false | yes | no"),
        ("libraries", "1", "true | false"),
        ("image_similarity", "", "true | false"),
        ("lambda_memory", "1024", "from 2048 to 10240"),
        ("lambda_memory", "lots", "from 2048 to 10240"),
        ("provisioned_concurrency", "-1", "from 0 to 1000"),
        ("sagemaker_instance_type", "g4dn.xlarge", "ml.g4dn.xlarge"),
        ("sagemaker_instance_type", "ml.m5.xlarge", "a SageMaker hosting GPU type of g4dn, g5"),
        # not a hosting type at all (absent from botocore's ProductionVariantInstanceType)
        ("sagemaker_instance_type", "ml.p3dn.24xlarge", "a SageMaker hosting GPU type of"),
        # a hosting type, but a V100: the image's CUDA 13 build has no kernels for it
        ("sagemaker_instance_type", "ml.p3.2xlarge", "a SageMaker hosting GPU type of"),
        ("sagemaker_max_instances", "0", "from 1 to 100"),
        ("throttle_rate", "0", "from 0.1 to 10000"),
        ("throttle_burst", "1.5", "from 1 to 5000"),
        ("s3_read_buckets", "Bad_Bucket", "S3 bucket names"),
        ("model", "RN50/openai", "ViT-B-32"),
        ("model", "ViT-B-32", "<arch>/<pretrained>"),
        ("stage", "prod/v1", "letters, digits"),
        ("stack_name", "1stack", "a letter"),
        ("log_retention_days", "31", "30 | 60"),
        ("cors_origin", "app.example.com", "https://"),
    ],
)
def test_bad_flag_names_the_flag_and_the_allowed_values(flag, value, allowed):
    with pytest.raises(ConfigError) as caught:
        config_of(**{flag: value})
    message = str(caught.value)
    assert f"'{flag}'" in message and repr(value) in message and allowed in message


@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("no", False), ("TRUE", True), (" False ", False)])
def test_switches_take_yes_no_like_the_stack_parameters(text, expected):
    config = config_of(explorer=text, libraries=text, image_similarity=text, api_gateway_logging_role=text)
    assert (config.explorer, config.libraries, config.image_similarity, config.api_gateway_logging_role) == (
        expected,
    ) * 4


@pytest.mark.parametrize(
    ("name", "closest"), [("backnd", "backend"), ("Explorer", "explorer"), ("lambda_mem", "lambda_memory")]
)
def test_an_unknown_flag_names_the_closest_known_one(name, closest):
    with pytest.raises(ConfigError, match=rf"^unknown context flag '{name}': did you mean '{closest}'\?$"):
        check_flag_names(["backend", name])


def test_an_unknown_flag_far_from_any_says_where_the_flags_are():
    with pytest.raises(ConfigError, match="unknown context flag 'zzz'.*infra/config.py"):
        check_flag_names(["zzz"])


def test_cdk_feature_flags_and_cli_keys_are_not_flags_of_this_app():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    check_flag_names([*context, "aws:cdk:enable-path-metadata", "availability-zones:account=1:region=x"])


def test_flags_that_must_agree():
    with pytest.raises(ConfigError, match="sagemaker_min_instances"):
        config_of(sagemaker_min_instances=3, sagemaker_max_instances=2)
    with pytest.raises(ConfigError, match="provisioned_concurrency"):
        config_of(provisioned_concurrency=5, reserved_concurrency=2)
    assert config_of(model="xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", backend="lambda").image_size == 224
    assert config_of(model="xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", backend="sagemaker").image_size == 224


@pytest.mark.slow
def test_app_py_stops_on_a_bad_flag():
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run(
        [sys.executable, "app.py", "-c", "backend=kubernetes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "context flag 'backend' has the value 'kubernetes'; allowed: lambda | sagemaker" in result.stderr


def run_app(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CDK_OUTDIR"}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.slow
def test_app_py_refuses_a_misspelled_flag_in_one_line():
    result = run_app("-c", "backnd=sagemaker")
    assert result.returncode == 2
    assert result.stderr == "error: unknown context flag 'backnd': did you mean 'backend'?\n"
    assert result.stdout == ""


@pytest.mark.slow
def test_app_py_says_where_it_wrote_the_templates_and_what_to_run_next(tmp_path):
    result = run_app("-c", "explorer=no", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in (tmp_path / "cdk.out").glob("*.template.json"))
    assert "ImageSimilarity.template.json" in written
    lines = result.stdout.splitlines()
    assert lines[0] == f"Wrote ImageSimilarity.template.json and {len(written) - 1} nested templates to cdk.out/"
    assert "bootstrap" in lines[1] and lines[1].endswith("deploy -c explorer=no")


@pytest.mark.parametrize(
    ("value", "nearest"),
    [
        ("MobileCLIP2-S0", "MobileCLIP2-S0/dfndr2b"),
        ("ViT-B-32-SigLIP2-256/webli2", "ViT-B-32-SigLIP2-256/webli"),
        ("vit-b-16-siglip2/webli", "ViT-B-16-SigLIP2/webli"),
    ],
)
def test_an_unknown_model_names_the_nearest_catalogued_one(value, nearest):
    with pytest.raises(ConfigError, match=f"did you mean '{re.escape(nearest)}'"):
        config_of(model=value)


@pytest.mark.parametrize(
    ("model", "image_size", "dimension"),
    [
        ("ViT-B-32-SigLIP2-256/webli", 256, 768),
        ("ViT-B-16-SigLIP2/webli", 224, 768),
        ("ViT-B-16-SigLIP-i18n-256/webli", 256, 768),
        ("MobileCLIP2-S0/dfndr2b", 256, 512),
        ("MobileCLIP2-S2/dfndr2b", 256, 512),
    ],
)
def test_the_newer_families_deploy_on_both_backends(model, image_size, dimension):
    for backend in ("lambda", "sagemaker"):
        config = config_of(model=model, backend=backend)
        assert (config.image_size, config.model.dimension) == (image_size, dimension)
