"""Every limit and default of the runtime, in one place.

Each field can be set by an environment variable named ``IMSIM_<FIELD NAME IN CAPITALS>`` (the
container images and the CDK stacks use those); the local server's flags override them. Settings
refuse what they do not know: an unknown ``IMSIM_*`` name, a value out of its choices or bounds, a
combination that cannot work. ``docs/api.md`` ("Limits and settings") lists them all.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from runtime.contract import ENV_PREFIX, setting_variable
from runtime.engines import catalog
from runtime.errors import SettingsError

SETTINGS_DOC = "docs/api.md#limits-and-settings"

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
SMOKE_VERSION_TAG = "RANDOM-WEIGHTS-SMOKE-TEST-NOT-A-REAL-MODEL"

EngineKind = Literal["auto", "torch", "onnx", "sagemaker"]
OnnxPrecision = Literal["auto", "fp32", "int8"]
Device = Literal["auto", "cpu", "cuda"]
StoreKind = Literal["local", "s3vectors", "off"]
AuthType = Literal["NONE", "AWS_IAM", "API_KEY"]
Port = typing.Annotated[int, Field(ge=1, le=65535)]


def _cidr(network: str) -> str:
    try:
        ipaddress.ip_network(network, strict=False)
    except ValueError:
        raise ValueError("should be a CIDR network, like 127.0.0.1/32 or 10.0.0.0/8") from None
    return network


Cidr = typing.Annotated[str, AfterValidator(_cidr)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        env_ignore_empty=True,  # IMSIM_X= (empty) means "not set"
        enable_decoding=False,  # values arrive as written; tuples are comma-separated (see _split_commas)
        validate_default=True,
        use_attribute_docstrings=True,  # each field's docstring is its description
    )

    # --- model -------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """OpenCLIP architecture name."""
    pretrained: str = DEFAULT_PRETRAINED
    """OpenCLIP pretrained tag; the second half of the model version string. Not given: the catalog's
    first tag for ``model`` (``runtime/engines/catalog.csv``), else ``laion2b_s34b_b79k``."""
    weights: str | None = None
    """Local checkpoint path; when set it replaces the download of ``pretrained``."""
    model_config_path: str | None = None
    """Extra OpenCLIP model config (a JSON file or folder of them), registered before loading."""
    model_dir: str | None = None
    """A folder written by ``python -m runtime.bake`` (the container images bake one in)."""
    smoke: bool = False
    """Random weights, for trying the API without any download. Says so in every answer."""
    engine: EngineKind = "auto"
    """``auto`` (``onnx`` when the model folder holds graphs, else ``torch``), ``torch``, ``onnx`` or ``sagemaker``."""
    onnx_precision: OnnxPrecision = "auto"
    """``auto`` (int8 where bake measured that it agrees with fp32, see ``runtime.bake.int8``), ``fp32`` or ``int8``."""
    micro_batching: bool = True
    """Concurrent requests share forward passes (``runtime.engines.batching``)."""
    batch_wait_ms: float = Field(0.0, ge=0, le=1000)
    """How long a forward pass may wait for more requests to join it (0: only those already queued)."""
    device: Device = "auto"
    """``auto`` picks CUDA when present, else CPU."""
    gpu_fp16: bool = True
    """On CUDA, compute in fp16 when a start-up check finds cosine >= 0.999 against fp32."""
    sagemaker_endpoint: str | None = None
    """The endpoint the ``sagemaker`` engine sends prepared images and texts to."""
    image_size: int = Field(224, ge=16, le=4096)
    """Model input size; used by the ``sagemaker`` engine, which has no model to ask."""
    dimension: int = Field(512, ge=1, le=8192)
    """Vector length; used by the ``sagemaker`` engine for a model the catalog does not list."""

    # --- inputs ------------------------------------------------------------------------
    max_image_side: int = Field(8192, ge=1)
    """Longest side, px: 8192 takes a 48 MP phone photo (8064x6048); the AI Solution Kit allowed 4096."""
    max_image_pixels: int = Field(50_000_000, ge=1)
    """Pixels an image may have (48 MP photos pass); headers claiming more than twice this are refused
    as decompression bombs before any decoding."""
    max_jpeg_scans: int = Field(32, ge=1)
    """Scans a JPEG may hold (counted from its markers before decoding); each progressive scan is
    another pass over every coefficient, so thousands of tiny scans are a CPU bomb. Encoders write 1-12."""
    max_jpeg_scan_pixels: int = Field(1_000_000_000, ge=1)
    """Scans x pixels a JPEG may cost (a 48 MP progressive photo of 12 scans: 585 million); bounds
    the decoding time of a JPEG of few but large scans (about 12 s of one core at this bound)."""
    decode_threads_per_request: int = Field(4, ge=1)
    """Images of one request decoded at once: a client's slow images queue behind each other, not
    in front of other clients' requests."""
    decode_memory_mb: int = Field(1024, ge=1)
    """Estimated pixel memory all decodes in progress may hold together (the process's bound; one
    image larger than it waits for the others and then decodes alone)."""
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    """Largest encoded image, in bytes (after base64 decoding, or as fetched)."""
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1)
    """Largest request body, in bytes."""
    max_json_values: int = Field(100_000, ge=1)
    """A request body may hold at most this many JSON values (bounded by counting commas and
    brackets before parsing): 32 MB of ``{},{},...`` would otherwise take ~800 MB to parse."""
    max_batch: int = Field(32, ge=1)
    """Most inputs in one batch-mode request (and in one forward pass)."""
    max_text_chars: int = Field(1000, ge=1)
    """Longest text input, in characters."""
    draft_factor: int = Field(1, ge=1, le=8)
    """JPEGs are decoded at reduced scale (1/2, 1/4, 1/8) down to ``draft_factor`` x the model input
    size: 2.6x faster for 1024x768 and 13x for 4096x3072, with model-input differences of about
    0.0004 mean, 0.016 max (on a 0-1 scale) against a full decode on photos."""
    fetch_timeout_s: float = Field(10.0, gt=0, le=600)
    """Time limit of one URL fetch, in seconds."""
    fetch_max_redirects: int = Field(5, ge=0, le=20)
    """Redirects a URL fetch follows, each checked like the first URL."""
    fetch_allow_networks: tuple[Cidr, ...] = ()
    """CIDR networks the URL fetcher may reach although they are not public (tests use
    ``127.0.0.1/32``). Empty in every deployment."""
    fetch_ports: tuple[Port, ...] = (80, 443, 8080, 8443)
    """The only ports http(s) URLs may name (any port in ``fetch_allow_networks``); empty: any port.
    Keeps the fetcher from probing other services (SMTP, Redis, SSH...) on public hosts."""
    s3_allowed_buckets: tuple[str, ...] = ()
    """When not empty, ``s3://`` URLs may only name these buckets (IAM enforces it too)."""

    # --- libraries ---------------------------------------------------------------------
    store: StoreKind = "local"
    """``local`` (embedded store in ``data_dir``), ``s3vectors`` (AWS) or ``off`` (no libraries)."""
    data_dir: str = "./data"
    """Where the ``local`` store keeps libraries (and the on-demand ONNX export its graphs)."""
    max_libraries: int = Field(10, ge=0)
    """Most libraries one deployment keeps."""
    max_images_per_library: int = Field(100_000, ge=1)
    """Most images one library keeps."""
    dedup_threshold: float | None = Field(None, ge=0, le=1)
    """The ``similar`` threshold (score, (1 + cosine) / 2) of an add that gives none, in a library created
    without one; unset: such adds refuse only exact and copy duplicates (docs/libraries.md, "Duplicates")."""
    copy_candidates: int = Field(10, ge=1, le=100)
    """How many of the nearest stored images (by embedding) an add compares perceptual hashes with to
    find a copy: more finds a copy among many similar shots (bursts), at a larger query (at most 100, S3
    Vectors' topK)."""
    max_metadata_bytes: int = Field(4096, ge=0)
    """Largest metadata object of one image, in bytes of JSON."""
    default_top_k: int = Field(10, ge=1)
    """Matches a search answers when it does not say ``top_k``."""
    max_top_k: int = Field(100, ge=1)
    """Most matches a search may ask for."""
    vector_bucket: str | None = None
    """S3 Vectors bucket of the ``s3vectors`` store (one index per library)."""
    registry_table: str | None = None
    """DynamoDB table (partition key ``name``, type S) of the ``s3vectors`` store's library registry."""
    library_lease_s: float = Field(30.0, gt=0)
    """``s3vectors`` store: how long a writer's lease on a library lasts if its holder crashes."""
    library_wait_s: float = Field(10.0, ge=0)
    """``s3vectors`` store: how long a write waits for a busy library before answering 503."""
    max_scan_images: int | None = Field(None, ge=1)
    """Images a count, a delete by filter or an ``order_by`` listing reads at most (each reads the whole
    library); a larger library is refused with 409 ``scan_too_large``. Unset: the store's own bound
    (``local``: none, the library is in memory; ``s3vectors``: 10,000, ten ListVectors calls or more)."""

    # --- bulk imports ------------------------------------------------------------------
    import_batch: int = Field(32, ge=1, le=500)
    """Images per batch of a bulk import: one forward pass, one store write (see docs/imports.md)."""
    import_batches_in_flight: int = Field(3, ge=1)
    """Local imports: batches read, embedded and written at once, so the engine never waits for a fetch."""
    import_max_running: int = Field(4, ge=1)
    """Local imports: how many run at once in this server, all libraries together (each is a thread and
    its ``import_batches_in_flight`` batch threads); another is refused with 409 ``too_many_imports``."""
    import_max_running_per_library: int = Field(2, ge=1)
    """Local imports: how many run at once into one library (they share its write lock)."""
    import_stop_grace_s: float = Field(2.0, ge=0)
    """Local imports: how long a shutdown (SIGTERM) or a library's deletion waits for the batches in
    flight before it goes on; a job stopped by a shutdown ends ``interrupted`` and the next start
    resumes it (Lambda gives 2 s after SIGTERM, containers 10 to 30)."""
    import_kept_per_library: int = Field(100, ge=1)
    """Local imports: the records (and files) of ended imports kept per library; starting one more
    removes the oldest ended ones past this."""
    max_manifest_bytes: int = Field(256 * 1024 * 1024, ge=1)
    """Largest JSONL manifest an import reads (about 2 million lines of 120 bytes)."""
    import_state_machine: str | None = None
    """AWS: the Step Functions state machine (ARN) that runs imports; unset: imports run in this process."""
    import_table: str | None = None
    """AWS: DynamoDB table (partition key ``import_id``, type S) of the import job records."""
    import_results_bucket: str | None = None
    """AWS: the bucket where the state machine's ResultWriter puts each import's per-item results."""

    # --- server ------------------------------------------------------------------------
    max_inflight_requests: int = Field(64, ge=0)
    """Requests worked on at once by one server process (``GET /ping`` aside; a request counts once
    its body has arrived); more are answered 503 with ``Retry-After`` at once (0: no limit)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A connection's next request headers must be complete this long after it opens or after its
    last answer (a deadline, not reset by trickling bytes); then it is closed."""
    body_timeout_s: float = Field(60.0, gt=0)
    """A request body must arrive whole within this long after its headers; then 408 ``request_timeout``."""
    keep_alive_timeout_s: float = Field(5.0, gt=0)
    """An idle keep-alive connection is closed after this long."""
    explorer: bool = True
    """Serve the API Explorer (Swagger UI) at ``/api-explorer``."""
    public_base_url: str | None = None
    """Base URL the API Explorer's "Try it out" calls (deployed: the stage URL)."""
    cors_origin: str | None = None
    """Origin browsers may call the API from (``*`` for any); unset: no CORS headers."""
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    """The local server answers requests whose ``Host`` is one of these names or the address it listens
    on (``*``: any); others are 400 ``invalid_host`` (DNS rebinding). Not used by the deployed API."""
    api_key: str | None = None
    """The local server answers only requests carrying this key in ``x-api-key`` (``GET /ping`` and the
    API Explorer's files aside); ``serve`` requires one to listen beyond loopback. Not used by the deployed API."""
    auth: AuthType = "NONE"
    """How the deployed API is protected (``AWS_IAM``, ``API_KEY`` or ``NONE``); the explorer says so."""
    log_format: Literal["text", "json"] = "text"
    """The local server's log lines: ``text``, or ``json`` (the Powertools lines Lambda logs)."""

    # --- checks --------------------------------------------------------------------------

    @field_validator("*", mode="before")
    @classmethod
    def _split_commas(cls, value: Any, info: ValidationInfo) -> Any:
        """Tuple settings are written ``a,b,c`` in the environment (blanks around items ignored)."""
        field = cls.model_fields[info.field_name] if info.field_name else None
        if isinstance(value, str) and field is not None and typing.get_origin(field.annotation) is tuple:
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("public_base_url")
    @classmethod
    def _url_is_http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("should be an http:// or https:// URL")
        return url

    @model_validator(mode="before")
    @classmethod
    def _catalogued_tag(cls, data: Any) -> Any:
        """``--model MobileCLIP2-S0`` alone means its catalogued tag, not ViT-B-32's default one."""
        if isinstance(data, dict) and data.get("pretrained") is None and data.get("model"):
            tag = catalog.first_pretrained(str(data["model"]))
            if tag:
                data = {**data, "pretrained": tag}
        return data

    @model_validator(mode="after")
    def _combination_works(self) -> Settings:
        problem = combination_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    # --- derived -------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        tag = SMOKE_VERSION_TAG if self.smoke else self.pretrained
        return f"{self.model}/{tag}"

    def cache_key(self) -> str:
        """Names a folder of derived files (ONNX graphs) for exactly these weights."""
        source = self.weights or ""
        stamp = f"{Path(source).stat().st_mtime_ns}" if source and Path(source).exists() else ""
        digest = hashlib.sha256(f"{self.model_version}|{source}|{stamp}|{self.smoke}".encode()).hexdigest()[:16]
        return f"{self.model.replace('/', '_')}-{digest}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, checked like new settings."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, labels: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``IMSIM_*`` variables (``os.environ`` unless given), then ``overrides``
        (a ``None`` override means "not given").

        Raises ``SettingsError`` with one line naming the variable, the value and what is allowed.
        ``labels`` names an override as its user wrote it (the CLI passes its flags).
        """
        environ = os.environ if environ is None else environ
        refuse_unknown_names(environ)
        values = dict(_Environment(cls, environ)())
        names = {field: env_name(field) for field in values}
        given = {field: value for field, value in overrides.items() if value is not None}
        values.update(given)
        names.update({field: (labels or {}).get(field, field) for field in given})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(settings_error_line(exc, names)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``Settings(...)`` takes only its arguments; the environment is read by ``from_env``,
        # which can refuse unknown names and say which variable is wrong.
        return (init_settings,)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items() if value != ""}


def env_name(field: str) -> str:
    return setting_variable(field)


def setting_names() -> list[str]:
    """Every setting's field name, in declaration order."""
    return list(Settings.model_fields)


def refuse_unknown_names(environ: Mapping[str, str]) -> None:
    known = {env_name(field) for field in setting_names()}
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            raise SettingsError(f"{name}: {unknown_name_reason(name)}")


def unknown_name_reason(name: str) -> str:
    """Names the closest setting (compared without the common prefix, which would make every name close)."""
    field = name.upper().removeprefix(ENV_PREFIX).lower()
    closest = difflib.get_close_matches(field, setting_names(), n=1, cutoff=0.6)
    hint = f"did you mean {env_name(closest[0])}?" if closest else f"the settings are listed in {SETTINGS_DOC}"
    return f"not a setting ({hint})"


def combination_problem(settings: Settings) -> str | None:
    """Settings that are each valid but cannot work together, as one line (None: they can)."""
    if settings.store == "s3vectors":
        missing = [env_name(f) for f in ("vector_bucket", "registry_table") if not getattr(settings, f)]
        if missing:
            return f"IMSIM_STORE=s3vectors needs {' and '.join(missing)} (set them, or IMSIM_STORE=local or off)"
    if settings.engine == "sagemaker":
        if not settings.sagemaker_endpoint:
            return "IMSIM_ENGINE=sagemaker needs IMSIM_SAGEMAKER_ENDPOINT (the endpoint name)"
        if settings.smoke:
            return "IMSIM_SMOKE=true cannot be used with IMSIM_ENGINE=sagemaker (the endpoint holds the weights)"
    if settings.device == "cuda" and settings.engine in ("onnx", "sagemaker"):
        return f"IMSIM_DEVICE=cuda needs IMSIM_ENGINE=torch or auto (the {settings.engine} engine does not use it)"
    if settings.smoke and settings.weights:
        return "IMSIM_SMOKE=true uses random weights: it cannot be used with IMSIM_WEIGHTS (give one or the other)"
    if settings.default_top_k > settings.max_top_k:
        return (
            f"IMSIM_DEFAULT_TOP_K={settings.default_top_k} is over IMSIM_MAX_TOP_K={settings.max_top_k} "
            "(the default must be allowed)"
        )
    return None


BOOLEAN_WORDS = "true/false, yes/no, on/off or 1/0"


def settings_error_line(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """pydantic's ValidationError about settings, as one line: the variable, the value, what is allowed.

    ``names`` maps a field to how its user wrote it (default: its ``IMSIM_*`` variable).
    The Lambda handlers and the CLI print it instead of a traceback.
    """
    error = exc.errors(include_url=False)[0]
    location = [str(part) for part in error.get("loc", ())]
    kind = error.get("type", "")
    if not location:  # a combination (model validator)
        return _reason(error)
    field = location[0]
    name = (names or {}).get(field, env_name(field))
    if kind == "extra_forbidden":
        return f"{name}: {unknown_name_reason(field)}"
    value = error.get("input")
    shown = repr(value) if isinstance(value, str) else str(value)
    return f"{name}={shown}: {_reason(error)}"


def _reason(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "bool_parsing" or kind == "bool_type":
        return f"should be {BOOLEAN_WORDS}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error.get("msg", "invalid value")))
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Input ").removeprefix("Value error, ")
