"""Every limit and default of the runtime, in one place.

Each field can be set by an environment variable named ``IMSIM_<FIELD NAME IN CAPITALS>``
(the container images and the CDK stacks use those); the local server's flags override them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "IMSIM_"

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
SMOKE_VERSION_TAG = "RANDOM-WEIGHTS-SMOKE-TEST-NOT-A-REAL-MODEL"


@dataclass(frozen=True)
class Settings:
    # --- model -------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """OpenCLIP architecture name."""
    pretrained: str = DEFAULT_PRETRAINED
    """OpenCLIP pretrained tag; the second half of the model version string."""
    weights: str | None = None
    """Local checkpoint path; when set it replaces the download of ``pretrained``."""
    model_config: str | None = None
    """Extra OpenCLIP model config (a JSON file or folder of them), registered before loading."""
    model_dir: str | None = None
    """A folder written by ``python -m runtime.bake`` (the container images bake one in)."""
    smoke: bool = False
    """Random weights, for trying the API without any download. Says so in every answer."""
    engine: str = "auto"
    """``auto``, ``torch``, ``onnx`` or ``sagemaker``: see ``runtime.engines``."""
    onnx_precision: str = "auto"
    """``auto`` (int8 where bake measured that it agrees with fp32, see ``runtime.bake.int8``), ``fp32`` or ``int8``."""
    micro_batching: bool = True
    """Concurrent requests share forward passes (``runtime.engines.batching``)."""
    batch_wait_ms: float = 0.0
    """How long a forward pass may wait for more requests to join it (0: only those already queued)."""
    device: str = "auto"
    """``auto`` picks CUDA when present, else CPU."""
    gpu_fp16: bool = True
    """On CUDA, compute in fp16 when a start-up check finds cosine >= 0.999 against fp32."""
    sagemaker_endpoint: str | None = None
    image_size: int = 224
    """Model input size; used by the ``sagemaker`` engine, which has no model to ask."""

    # --- inputs ------------------------------------------------------------------------
    max_image_side: int = 4096
    max_image_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    max_json_values: int = 100_000
    """A request body may hold at most this many JSON values (bounded by counting commas and
    brackets before parsing): 32 MB of ``{},{},...`` would otherwise take ~800 MB to parse."""
    max_batch: int = 32
    max_text_chars: int = 1000
    draft_factor: int = 1
    """JPEGs are decoded at reduced scale (1/2, 1/4, 1/8) down to ``draft_factor`` x the model input
    size: 2.6x faster for 1024x768 and 13x for 4096x3072, with model-input differences of about
    0.0004 mean, 0.016 max (on a 0-1 scale) against a full decode on photos."""
    fetch_timeout_s: float = 10.0
    fetch_max_redirects: int = 5
    fetch_allow_networks: tuple[str, ...] = ()
    """CIDR networks the URL fetcher may reach although they are not public (tests use
    ``127.0.0.1/32``). Empty in every deployment."""
    fetch_ports: tuple[int, ...] = (80, 443, 8080, 8443)
    """The only ports http(s) URLs may name (any port in ``fetch_allow_networks``); empty: any port.
    Keeps the fetcher from probing other services (SMTP, Redis, SSH...) on public hosts."""
    s3_allowed_buckets: tuple[str, ...] = ()
    """When not empty, ``s3://`` URLs may only name these buckets (IAM enforces it too)."""

    # --- libraries ---------------------------------------------------------------------
    store: str = "local"
    """``local`` (embedded store in ``data_dir``), ``s3vectors`` (AWS) or ``off`` (no libraries)."""
    data_dir: str = "./data"
    max_libraries: int = 10
    max_images_per_library: int = 100_000
    dedup_threshold: float = 0.97
    """Score ((1 + cosine) / 2) at or above which an added image counts as a near-duplicate
    (0.97 is cosine 0.94: re-encoded, resized or lightly cropped copies; see the README, "Near-duplicates")."""
    max_metadata_bytes: int = 4096
    default_top_k: int = 10
    max_top_k: int = 100
    vector_bucket: str | None = None
    """S3 Vectors bucket of the ``s3vectors`` store (one index per library)."""
    registry_table: str | None = None
    """DynamoDB table (partition key ``name``, type S) of the ``s3vectors`` store's library registry."""
    library_lease_s: float = 30.0
    """``s3vectors`` store: how long a writer's lease on a library lasts if its holder crashes."""
    library_wait_s: float = 10.0
    """``s3vectors`` store: how long a write waits for a busy library before answering 503."""

    # --- server ------------------------------------------------------------------------
    max_inflight_requests: int = 64
    """Requests handled at once by one server process (``GET /ping`` aside); more are answered
    503 with ``Retry-After`` at once instead of queueing without bound (0: no limit)."""
    explorer: bool = True
    public_base_url: str | None = None
    """Base URL the API Explorer's "Try it out" calls (deployed: the stage URL)."""
    cors_origin: str | None = None
    """Origin browsers may call the API from (``*`` for any); unset: no CORS headers."""
    auth: str = "NONE"
    """How the deployed API is protected (``AWS_IAM`` or ``NONE``); the explorer says so."""

    @property
    def model_version(self) -> str:
        tag = SMOKE_VERSION_TAG if self.smoke else self.pretrained
        return f"{self.model}/{tag}"

    def cache_key(self) -> str:
        """Names a folder of derived files (ONNX graphs) for exactly these weights."""
        import hashlib

        source = self.weights or ""
        stamp = f"{Path(source).stat().st_mtime_ns}" if source and Path(source).exists() else ""
        digest = hashlib.sha256(f"{self.model_version}|{source}|{stamp}|{self.smoke}".encode()).hexdigest()[:16]
        return f"{self.model.replace('/', '_')}-{digest}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        return settings.with_baked_model()

    def with_baked_model(self) -> Settings:
        """Take model name, tag and weights from a baked model folder's manifest."""
        if not self.model_dir:
            return self
        manifest_path = Path(self.model_dir) / "manifest.json"
        if not manifest_path.exists():
            return self
        manifest = json.loads(manifest_path.read_text())
        if "weights_file" not in manifest:
            return self
        config = Path(self.model_dir) / manifest["config_file"] if manifest.get("config_file") else None
        weights = Path(self.model_dir) / manifest["weights_file"]
        return self.replace(
            model=manifest["model"],
            pretrained=manifest["pretrained"],
            weights=str(weights) if weights.exists() else None,  # the Lambda image keeps only the graphs
            model_config=str(config) if config else self.model_config,
            image_size=manifest.get("image_size", self.image_size),
            smoke=False,
        )


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = str(f.type)
    if kind.startswith("bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("tuple"):
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        return tuple(int(item) for item in items) if kind.startswith("tuple[int") else items
    return raw
