"""Context flags (``cdk deploy -c name=value``): every flag is parsed and validated here, once.

A bad value stops synth with a ``ConfigError`` that names the flag and its allowed values. The
defaults live in ``cdk.json``; ``FLAG_DEFAULTS`` repeats them for apps built without it (tests).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.sagemaker_hosting import gpu_families, gpu_instance_types
from runtime.engines import catalog

SOLUTION_NAME = "Image Similarity API"
SOLUTION_VERSION = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
    "version"
]

FLAG_DEFAULTS: dict[str, Any] = {
    "stack_name": "ImageSimilarity",
    "backend": "lambda",
    "auth": "AWS_IAM",
    "image_similarity": True,
    "explorer": True,
    "libraries": True,
    "stage": "prod",
    "model": "ViT-B-32/laion2b_s34b_b79k",
    "lambda_memory": 4096,
    "provisioned_concurrency": 0,
    "reserved_concurrency": 0,
    "sagemaker_instance_type": "ml.g4dn.xlarge",
    "sagemaker_min_instances": 1,
    "sagemaker_max_instances": 2,
    "sagemaker_invocations_per_instance": 600,
    "throttle_rate": 10,
    "throttle_burst": 20,
    "s3_read_buckets": "",
    "cors_origin": "*",
    "log_retention_days": 30,
    "latency_alarm_ms": 5000,
    "api_gateway_logging_role": True,
    "waf": False,
}

BACKENDS = ("lambda", "sagemaker")
AUTH_TYPES = ("AWS_IAM", "API_KEY", "NONE")
TRUE_WORDS = ("true", "yes")
FALSE_WORDS = ("false", "no")
# Context keys that are not flags of this app: CDK feature flags ("@aws-cdk/..."), keys the CLI
# adds ("aws:cdk:...") and cached lookups ("availability-zones:account=...") all hold "@" or ":".
CLI_CONTEXT_KEYS = ("acknowledged-issue-numbers",)

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

LAMBDA_MEMORY_RANGE = (2048, 10240)  # the model needs ~1.5 GB; Lambda's ceiling is 10,240 MB
LAMBDA_ENGINE = "onnx"  # the Lambda image serves ONNX Runtime graphs exported at build time (no torch)

STACK_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9-]{0,29}"  # short: it prefixes the endpoint's name (63 max)
STAGE_PATTERN = r"[A-Za-z0-9_-]{1,128}"
PRETRAINED_PATTERN = r"[A-Za-z0-9_.-]{1,100}"
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
CORS_ORIGIN_PATTERN = r"\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?"


class ConfigError(ValueError):
    """A context flag has a value this app cannot deploy."""


@dataclass(frozen=True)
class Config:
    stack_name: str
    backend: str
    auth: str
    image_similarity: bool
    explorer: bool
    libraries: bool
    stage: str
    model_arch: str
    model_pretrained: str
    lambda_memory: int
    provisioned_concurrency: int
    reserved_concurrency: int
    sagemaker_instance_type: str
    sagemaker_min_instances: int
    sagemaker_max_instances: int
    sagemaker_invocations_per_instance: int
    throttle_rate: float
    throttle_burst: int
    s3_read_buckets: tuple[str, ...]
    cors_origin: str
    log_retention_days: int
    latency_alarm_ms: int
    api_gateway_logging_role: bool
    waf: bool

    @property
    def model_version(self) -> str:
        return f"{self.model_arch}/{self.model_pretrained}"

    @property
    def model(self) -> catalog.CatalogModel:
        """The model's row in the catalog (runtime/engines/catalog.csv): size, tokenizer, engines."""
        model = catalog.find(self.model_arch, self.model_pretrained)
        assert model is not None, "load_config only accepts catalogued models"
        return model

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def api_name(self) -> str:
        return f"{self.stack_name}-api"


def check_flag_names(names: Iterable[str]) -> None:
    """Refuse a context flag this app does not know, naming the closest known one."""
    for name in names:
        if name in FLAG_DEFAULTS or name in CLI_CONTEXT_KEYS or name.startswith("@") or ":" in name:
            continue
        close = difflib.get_close_matches(name, FLAG_DEFAULTS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "the flags are listed in infra/config.py and cdk.json"
        raise ConfigError(f"unknown context flag '{name}': {hint}")


def load_config(get_context: Callable[[str], Any]) -> Config:
    """Read every flag through ``get_context`` (e.g. ``app.node.try_get_context``) and validate it."""

    def raw(name: str) -> Any:
        value = get_context(name)
        return FLAG_DEFAULTS[name] if value is None else value

    model_arch, model_pretrained = _model(raw("model"))
    config = Config(
        stack_name=_pattern(
            "stack_name", raw("stack_name"), STACK_NAME_PATTERN, "a letter, then up to 29 letters, digits or '-'"
        ),
        backend=_choice("backend", raw("backend"), BACKENDS),
        auth=_choice("auth", raw("auth"), AUTH_TYPES),
        image_similarity=_bool("image_similarity", raw("image_similarity")),
        explorer=_bool("explorer", raw("explorer")),
        libraries=_bool("libraries", raw("libraries")),
        stage=_pattern("stage", raw("stage"), STAGE_PATTERN, "1 to 128 letters, digits, '-' or '_'"),
        model_arch=model_arch,
        model_pretrained=model_pretrained,
        lambda_memory=_int("lambda_memory", raw("lambda_memory"), *LAMBDA_MEMORY_RANGE),
        provisioned_concurrency=_int("provisioned_concurrency", raw("provisioned_concurrency"), 0, 1000),
        reserved_concurrency=_int("reserved_concurrency", raw("reserved_concurrency"), 0, 1000),
        sagemaker_instance_type=_instance_type(raw("sagemaker_instance_type")),
        sagemaker_min_instances=_int("sagemaker_min_instances", raw("sagemaker_min_instances"), 1, 100),
        sagemaker_max_instances=_int("sagemaker_max_instances", raw("sagemaker_max_instances"), 1, 100),
        sagemaker_invocations_per_instance=_int(
            "sagemaker_invocations_per_instance", raw("sagemaker_invocations_per_instance"), 1, 100_000
        ),
        throttle_rate=_number("throttle_rate", raw("throttle_rate"), 0.1, 10_000),
        throttle_burst=_int("throttle_burst", raw("throttle_burst"), 1, 5000),
        s3_read_buckets=_buckets(raw("s3_read_buckets")),
        cors_origin=_pattern(
            "cors_origin", raw("cors_origin"), CORS_ORIGIN_PATTERN, "'*' or one origin such as https://app.example.com"
        ),
        log_retention_days=_retention(raw("log_retention_days")),
        latency_alarm_ms=_int("latency_alarm_ms", raw("latency_alarm_ms"), 100, 29_000),
        api_gateway_logging_role=_bool("api_gateway_logging_role", raw("api_gateway_logging_role")),
        waf=_bool("waf", raw("waf")),
    )
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    if config.backend == "lambda" and not config.model.runs_on(LAMBDA_ENGINE):
        raise ConfigError(
            f"context flag 'model' ({config.model_version}) needs -c backend=sagemaker: the catalog "
            f"(runtime/engines/catalog.csv) does not list the lambda backend's {LAMBDA_ENGINE} engine for it"
        )
    if config.sagemaker_min_instances > config.sagemaker_max_instances:
        raise ConfigError(
            f"context flag 'sagemaker_min_instances' ({config.sagemaker_min_instances}) must not exceed "
            f"'sagemaker_max_instances' ({config.sagemaker_max_instances})"
        )
    if config.reserved_concurrency and config.provisioned_concurrency > config.reserved_concurrency:
        raise ConfigError(
            f"context flag 'provisioned_concurrency' ({config.provisioned_concurrency}) must not exceed "
            f"'reserved_concurrency' ({config.reserved_concurrency}) when that is set"
        )


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"context flag '{name}' has the value {value!r}; allowed: {allowed}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise _fail(name, value, " | ".join(str(a) for a in allowed))
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in TRUE_WORDS + FALSE_WORDS:
        raise _fail(name, value, "true | false | yes | no")
    return text in TRUE_WORDS


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _int(name: str, value: Any, low: int, high: int) -> int:
    number = _whole(value)
    if number is None or not low <= number <= high:
        raise _fail(name, value, f"a whole number from {low} to {high}")
    return number


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise _fail(name, value, f"a number from {low:g} to {high:g}")
    return number


def _pattern(name: str, value: Any, pattern: str, allowed: str) -> str:
    text = str(value)
    if not re.fullmatch(pattern, text):
        raise _fail(name, value, allowed)
    return text


def _instance_type(value: Any) -> str:
    """GPU types only: the sagemaker backend exists to run the model on a GPU (lambda is the CPU one)."""
    allowed = gpu_instance_types()
    if value in allowed:
        return str(value)
    nearest = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"did you mean {nearest[0]}? " if nearest else ""
    families = ", ".join(gpu_families())
    raise _fail("sagemaker_instance_type", value, f"{hint}a SageMaker hosting GPU type of {families}")


def _retention(value: Any) -> int:
    days = _whole(value)
    if days not in LOG_RETENTION_DAYS:
        raise _fail("log_retention_days", value, " | ".join(str(d) for d in LOG_RETENTION_DAYS))
    return days


def _model(value: Any) -> tuple[str, str]:
    arch, _, pretrained = str(value).partition("/")
    if catalog.find(arch, pretrained) is None:
        close = difflib.get_close_matches(str(value), catalog.versions(), n=1, cutoff=0.4)
        hint = f"did you mean '{close[0]}'? " if close else ""
        allowed = f"{hint}<arch>/<pretrained> listed in runtime/engines/catalog.csv: " + " | ".join(catalog.versions())
        raise _fail("model", value, allowed)
    return arch, pretrained


def _buckets(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    for bucket in names:
        if not re.fullmatch(BUCKET_PATTERN, bucket):
            raise _fail("s3_read_buckets", bucket, "a comma-separated list of S3 bucket names")
    return names
