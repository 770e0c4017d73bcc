"""What the runtime and the CDK app must agree on, in one place: media types, metrics, environment.

Stdlib only, and importing nothing of the runtime: the CDK app (``infra/``) takes these facts from
here without importing FastAPI, NumPy or pydantic (``tests/infra/test_infra_imports.py`` keeps it
so). The runtime takes them from here too, so neither side can change one alone.

- Media types: the bodies the runtime reads as something other than JSON, which the REST API must
  therefore declare as binary media types (API Gateway then passes them to Lambda byte for byte).
- Metrics: the namespace, service dimension and names of the runtime's metrics (written by
  ``runtime.observability``), which the dashboard and the alarms read (``infra/monitoring_stack.py``).
- Environment: the variables the functions read; the stacks write them (``infra/environment.py``
  for the ``IMSIM_*`` settings, ``infra/monitoring_stack.py`` for Powertools').
"""

from __future__ import annotations

# --- media types -------------------------------------------------------------------------------

JSON_MEDIA_TYPE = "application/json"
"""Every answer's body (errors included), and how a request body of any other type is read."""
MULTIPART_MEDIA_TYPE = "multipart/form-data"
"""A form: file parts fill the image slots, text parts the other fields."""
BINARY_MEDIA_TYPES = ("image/*", "application/octet-stream")
"""A body of one of these types is the image itself (``type/*``: any subtype)."""
UPLOAD_MEDIA_TYPES = (*BINARY_MEDIA_TYPES, MULTIPART_MEDIA_TYPE)
"""The media types read as something other than JSON: the REST API's binary media types, so that
API Gateway passes their bodies byte for byte (base64-encoded in the Lambda event)."""


def matches_media_type(media_type: str, pattern: str) -> bool:
    """``image/png`` matches ``image/*`` and ``image/png`` (both lower case, without parameters)."""
    if pattern.endswith("/*"):
        return media_type.startswith(pattern[:-1])
    return media_type == pattern


# --- metrics -----------------------------------------------------------------------------------

SERVICE_NAME = "image-similarity"
"""Powertools' service: the ``service`` dimension of every runtime metric."""
METRICS_NAMESPACE = "ImageSimilarity"
"""The CloudWatch namespace of the runtime's metrics (embedded metric format)."""

SERVICE_DIMENSION = "service"
ROUTE_DIMENSION = "route"
OUTCOME_DIMENSION = "outcome"
"""``ok`` or the error code."""

# Per request, by route (and for the whole service); ``Requests`` also by route and outcome.
REQUESTS_METRIC = "Requests"
LATENCY_METRIC = "Latency"
SERVER_ERRORS_METRIC = "ServerErrors"
URL_FAILURES_METRIC = "UrlFailures"
# Per call of the embedder.
IMAGES_EMBEDDED_METRIC = "ImagesEmbedded"
TEXTS_EMBEDDED_METRIC = "TextsEmbedded"
BATCH_SIZE_METRIC = "BatchSize"
# Per library add.
IMAGES_ADDED_METRIC = "ImagesAdded"
DUPLICATES_REFUSED_METRIC = "DuplicatesRefused"
EXACT_DUPLICATES_REFUSED_METRIC = "ExactDuplicatesRefused"
# Per chunk of a bulk import.
IMPORTED_IMAGES_METRIC = "ImportedImages"
IMPORT_DUPLICATES_METRIC = "ImportDuplicates"
IMPORT_FAILURES_METRIC = "ImportFailures"

METRIC_NAMES = (
    REQUESTS_METRIC,
    LATENCY_METRIC,
    SERVER_ERRORS_METRIC,
    URL_FAILURES_METRIC,
    IMAGES_EMBEDDED_METRIC,
    TEXTS_EMBEDDED_METRIC,
    BATCH_SIZE_METRIC,
    IMAGES_ADDED_METRIC,
    DUPLICATES_REFUSED_METRIC,
    EXACT_DUPLICATES_REFUSED_METRIC,
    IMPORTED_IMAGES_METRIC,
    IMPORT_DUPLICATES_METRIC,
    IMPORT_FAILURES_METRIC,
)
"""Every metric the runtime writes (besides Powertools' own ``ColdStart``)."""

# --- environment -------------------------------------------------------------------------------

SERVICE_NAME_VARIABLE = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"
LOG_LEVEL_VARIABLE = "POWERTOOLS_LOG_LEVEL"
TRACE_DISABLED_VARIABLE = "POWERTOOLS_TRACE_DISABLED"
DEFAULT_LOG_LEVEL = "INFO"

ENV_PREFIX = "IMSIM_"
"""Each runtime setting is read from ``IMSIM_<FIELD NAME IN CAPITALS>`` (``runtime.settings``)."""

DEPLOYED_SETTINGS = (
    "model",
    "pretrained",
    "image_size",
    "engine",
    "sagemaker_endpoint",
    "device",
    "store",
    "vector_bucket",
    "registry_table",
    "s3_allowed_buckets",
    "library_wait_s",
    "import_batch",
    "import_state_machine",
    "import_table",
    "import_results_bucket",
    "auth",
    "explorer",
    "cors_origin",
)
"""The settings the stacks may write into a function's environment: each one is a field of
``runtime.settings.Settings`` (``tests/test_contract.py`` checks it); add a name here before a
stack writes it."""


def setting_variable(setting: str) -> str:
    """``store`` -> ``IMSIM_STORE``."""
    return ENV_PREFIX + setting.upper()
