"""Settings come from IMSIM_* environment variables, typed like the fields they set, and refuse
what they do not know in one line that names the variable, the value and what is allowed."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from runtime.errors import SettingsError
from runtime.settings import Settings, setting_names, settings_error_line

ROOT = Path(__file__).resolve().parents[2]
S3 = {"IMSIM_STORE": "s3vectors", "IMSIM_VECTOR_BUCKET": "b", "IMSIM_REGISTRY_TABLE": "t"}


def refusal(environ: dict[str, str], **overrides) -> str:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environ, **overrides)
    line = str(refused.value)
    assert "\n" not in line
    return line


def test_environment_values_are_typed():
    settings = Settings.from_env(
        {
            "IMSIM_MAX_BATCH": "8",
            "IMSIM_FETCH_TIMEOUT_S": "2.5",
            "IMSIM_SMOKE": "true",
            "IMSIM_FETCH_PORTS": "80, 8443",
            "IMSIM_S3_ALLOWED_BUCKETS": "a,b",
            "IMSIM_CORS_ORIGIN": "*",
        }
    )
    assert settings.max_batch == 8
    assert settings.fetch_timeout_s == 2.5
    assert settings.smoke is True
    assert settings.fetch_ports == (80, 8443)
    assert settings.s3_allowed_buckets == ("a", "b")
    assert settings.cors_origin == "*"
    assert "RANDOM-WEIGHTS" in settings.model_version


def test_flags_override_the_environment():
    settings = Settings.from_env({"IMSIM_MAX_BATCH": "8"}, max_batch=4, data_dir=None)
    assert settings.max_batch == 4
    assert settings.data_dir == "./data"  # None means "not given"


def test_what_the_environment_accepted_before_it_still_accepts():
    settings = Settings.from_env(
        {
            "IMSIM_EXPLORER": "no",
            "IMSIM_MICRO_BATCHING": "0",
            "IMSIM_GPU_FP16": "On",
            "IMSIM_FETCH_ALLOW_NETWORKS": "127.0.0.1/32, 10.0.0.0/8,",
            "IMSIM_FETCH_PORTS": "",  # empty means "not set": the default
            "IMSIM_CORS_ORIGIN": "",
            "IMSIM_AUTH": "AWS_IAM",
            **S3,
        }
    )
    assert (settings.explorer, settings.micro_batching, settings.gpu_fp16) == (False, False, True)
    assert settings.fetch_allow_networks == ("127.0.0.1/32", "10.0.0.0/8")
    assert settings.fetch_ports == (80, 443, 8080, 8443) and settings.cors_origin is None
    assert settings.store == "s3vectors" and settings.auth == "AWS_IAM"


def test_the_process_environment_is_read_only_by_from_env(monkeypatch):
    monkeypatch.setenv("IMSIM_MAX_BATCH", "3")
    assert Settings().max_batch == 32
    assert Settings.from_env().max_batch == 3


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"IMSIM_EXPLORER": "ture"}, "IMSIM_EXPLORER='ture': should be true/false, yes/no, on/off or 1/0"),
        ({"IMSIM_ENGINE": "onxx"}, "IMSIM_ENGINE='onxx': should be 'auto', 'torch', 'onnx' or 'sagemaker'"),
        ({"IMSIM_ONNX_PRECISION": "int4"}, "IMSIM_ONNX_PRECISION='int4': should be 'auto', 'fp32' or 'int8'"),
        ({"IMSIM_DEVICE": "gpu"}, "IMSIM_DEVICE='gpu': should be 'auto', 'cpu' or 'cuda'"),
        ({"IMSIM_STORE": "redis"}, "IMSIM_STORE='redis': should be 'local', 's3vectors' or 'off'"),
        ({"IMSIM_AUTH": "iam"}, "IMSIM_AUTH='iam': should be 'NONE', 'AWS_IAM' or 'API_KEY'"),
        ({"IMSIM_MAX_BATCH": "0"}, "IMSIM_MAX_BATCH='0': should be greater than or equal to 1"),
        ({"IMSIM_MAX_BATCH": "many"}, "IMSIM_MAX_BATCH='many': should be a valid integer"),
        ({"IMSIM_DEDUP_THRESHOLD": "1.5"}, "IMSIM_DEDUP_THRESHOLD='1.5': should be less than or equal to 1"),
        ({"IMSIM_FETCH_TIMEOUT_S": "0"}, "IMSIM_FETCH_TIMEOUT_S='0': should be greater than 0"),
        ({"IMSIM_FETCH_PORTS": "80,70000"}, "IMSIM_FETCH_PORTS='70000': should be less than or equal to 65535"),
        ({"IMSIM_FETCH_ALLOW_NETWORKS": "10.0.0.0/8,lan"}, "IMSIM_FETCH_ALLOW_NETWORKS='lan': should be a CIDR"),
        ({"IMSIM_PUBLIC_BASE_URL": "example.org"}, "IMSIM_PUBLIC_BASE_URL='example.org': should be an http"),
        ({"IMSIM_EXPLORR": "false"}, "IMSIM_EXPLORR: not a setting (did you mean IMSIM_EXPLORER?)"),
        ({"IMSIM_MAX_BACH": "4"}, "IMSIM_MAX_BACH: not a setting (did you mean IMSIM_MAX_BATCH?)"),
        ({"IMSIM_COLOUR": "red"}, "IMSIM_COLOUR: not a setting (the settings are listed in docs/api.md"),
    ],
)
def test_an_unknown_name_or_invalid_value_is_refused_in_one_line(environ, line):
    assert refusal(environ).startswith(line)


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"IMSIM_STORE": "s3vectors"}, "IMSIM_STORE=s3vectors needs IMSIM_VECTOR_BUCKET and IMSIM_REGISTRY_TABLE"),
        ({"IMSIM_STORE": "s3vectors", "IMSIM_VECTOR_BUCKET": "b"}, "IMSIM_STORE=s3vectors needs IMSIM_REGISTRY_TABLE"),
        ({"IMSIM_ENGINE": "sagemaker"}, "IMSIM_ENGINE=sagemaker needs IMSIM_SAGEMAKER_ENDPOINT"),
        (
            {"IMSIM_ENGINE": "sagemaker", "IMSIM_SAGEMAKER_ENDPOINT": "e", "IMSIM_SMOKE": "1"},
            "IMSIM_SMOKE=true cannot be used with IMSIM_ENGINE=sagemaker",
        ),
        ({"IMSIM_SMOKE": "yes", "IMSIM_WEIGHTS": "w.pt"}, "IMSIM_SMOKE=true uses random weights"),
        ({"IMSIM_DEVICE": "cuda", "IMSIM_ENGINE": "onnx"}, "IMSIM_DEVICE=cuda needs IMSIM_ENGINE=torch or auto"),
        ({"IMSIM_DEFAULT_TOP_K": "20", "IMSIM_MAX_TOP_K": "5"}, "IMSIM_DEFAULT_TOP_K=20 is over IMSIM_MAX_TOP_K=5"),
    ],
)
def test_a_combination_that_cannot_work_is_refused(environ, line):
    assert refusal(environ).startswith(line)


def test_a_combination_that_works_is_accepted():
    assert Settings.from_env(S3).vector_bucket == "b"
    assert Settings.from_env({"IMSIM_ENGINE": "sagemaker", "IMSIM_SAGEMAKER_ENDPOINT": "e"}).engine == "sagemaker"
    # the deployed front function names its bucket and table even while the libraries are off
    assert Settings.from_env({**S3, "IMSIM_STORE": "off"}).store == "off"


def test_an_override_is_named_as_its_user_wrote_it():
    line = refusal({}, fetch_allow_networks=("x",), labels={"fetch_allow_networks": "--allow-network"})
    assert line.startswith("--allow-network='x': should be a CIDR network")
    assert refusal({}, max_batch=0).startswith("max_batch=0: should be greater than or equal to 1")


def test_settings_are_frozen_and_replace_checks_the_result():
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.max_batch = 4  # type: ignore[misc]
    assert settings.replace(max_batch=4).max_batch == 4 and settings.max_batch == 32
    with pytest.raises(ValidationError) as refused:
        settings.replace(engine="onxx")
    assert settings_error_line(refused.value) == "IMSIM_ENGINE='onxx': should be 'auto', 'torch', 'onnx' or 'sagemaker'"
    with pytest.raises(ValidationError) as unknown:
        Settings(max_bach=4)
    assert settings_error_line(unknown.value) == "IMSIM_MAX_BACH: not a setting (did you mean IMSIM_MAX_BATCH?)"


def test_model_version_and_cache_key_follow_the_weights(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    settings = Settings(model="RN50", pretrained="openai")
    assert settings.model_version == "RN50/openai"
    assert Settings(smoke=True).model_version.endswith("RANDOM-WEIGHTS-SMOKE-TEST-NOT-A-REAL-MODEL")
    with_weights = settings.replace(weights=str(weights))
    assert with_weights.cache_key() != settings.cache_key()
    assert with_weights.cache_key() == settings.replace(weights=str(weights)).cache_key()


def test_every_setting_has_a_docstring_and_a_row_in_the_settings_doc():
    source = (ROOT / "runtime" / "settings.py").read_text()
    doc = (ROOT / "docs" / "api.md").read_text()
    for name in setting_names():
        assert re.search(rf"\n    {name}: [^\n]+\n    \"\"\"", source), f"{name} has no docstring"
        assert f"`IMSIM_{name.upper()}`" in doc, f"docs/api.md does not list IMSIM_{name.upper()}"


def test_a_catalogued_model_alone_takes_its_catalogued_tag():
    assert Settings(model="MobileCLIP2-S0").pretrained == "dfndr2b"
    assert Settings(model="ViT-B-32-SigLIP2-256").model_version == "ViT-B-32-SigLIP2-256/webli"
    assert Settings(model="ViT-B-32-SigLIP2-256", pretrained="other").pretrained == "other"
    assert Settings.from_env({"IMSIM_MODEL": "MobileCLIP2-S2"}).pretrained == "dfndr2b"
    assert Settings().pretrained == "laion2b_s34b_b79k"
    assert Settings(model="a-custom-config").pretrained == "laion2b_s34b_b79k"
