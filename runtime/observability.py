"""Logs, metrics and traces: Powertools for AWS Lambda (Python), set up once for every entry point.

- Logs: one JSON line per request (``runtime.api.request_log``) and the runtime's own messages,
  through Powertools' JSON formatter; on Lambda with the invocation's context (request id, cold
  start). The local server logs text unless ``log_format`` is ``json``. Never a body or an image.
- Metrics: CloudWatch embedded metric format (EMF), printed to stdout, where Lambda's log agent
  turns it into metrics. Emitted only by a Lambda entry point (``lambda_entry``); elsewhere every
  ``record_*`` function does nothing.
- Traces: X-Ray, on Lambda with active tracing only. ``span(name)`` times a subsegment (fetch,
  decode, embed, store); with tracing off it is a shared no-op context.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from runtime import contract

SERVICE = os.environ.get(contract.SERVICE_NAME_VARIABLE, contract.SERVICE_NAME)
NAMESPACE = os.environ.get(contract.METRICS_NAMESPACE_VARIABLE, contract.METRICS_NAMESPACE)
LOG_FORMATS = ("text", "json")
"""A duplicate scoring this high is the same image again (re-sent bytes), not a near-copy."""

logger = Logger(service=SERVICE)
"""Powertools' logger: JSON lines on stdout. ``use_json_logs`` routes the ``runtime`` loggers through it."""
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
"""Per-invocation metrics (dimension ``service``), flushed by ``lambda_entry`` after each event."""

_emitting = False
_NO_SPAN: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()


# --- logs ---------------------------------------------------------------------------------------


def use_json_logs(level: str | int = "INFO") -> None:
    """Route the ``runtime`` loggers (and uvicorn's, when it runs) through Powertools' JSON lines."""
    logger.setLevel(level)
    for name in ("runtime", "uvicorn", "uvicorn.error"):
        logging.getLogger(name)  # registered, so the copy below finds it
    copy_config_to_registered_loggers(source_logger=logger, include={"runtime", "uvicorn"})


def configure_logs(log_format: str, level: str | int = "INFO") -> None:
    """The local server's logging: ``text`` (a readable line) or ``json`` (the lines Lambda logs)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format: {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if log_format == "json":
        use_json_logs(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# --- traces -------------------------------------------------------------------------------------


def _make_tracer() -> Any:
    """Powertools' Tracer where X-Ray listens (a Lambda function with active tracing), else None."""
    tracing_off = os.environ.get(contract.TRACE_DISABLED_VARIABLE, "").lower() in ("1", "true")
    if not os.environ.get("LAMBDA_TASK_ROOT") or tracing_off:
        return None
    from aws_lambda_powertools import Tracer  # imports the X-Ray SDK: only where traces are sent

    # botocore only: S3 reads, S3 Vectors, DynamoDB and SageMaker calls show as their own subsegments.
    return Tracer(service=SERVICE, patch_modules=["botocore"])


tracer = _make_tracer()


def span(name: str) -> contextlib.AbstractContextManager[Any]:
    """An X-Ray subsegment around a block (``with span("decode"): ...``); a no-op with tracing off."""
    if tracer is None:
        return _NO_SPAN
    return tracer.provider.in_subsegment(f"## {name}")


# --- metrics ------------------------------------------------------------------------------------


def record_request(route: str, outcome: str, status: int, latency_ms: float) -> None:
    """One request's metrics, in two EMF lines.

    ``Requests``, ``Latency``, ``ServerErrors`` and ``UrlFailures`` by route and for the whole
    service (the last two are 0 or 1 per request, so their average is a rate); ``Requests`` also by
    route and outcome (``ok`` or the error code).
    """
    if not _emitting:
        return
    by_route = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    by_route.add_dimension(contract.ROUTE_DIMENSION, route)
    by_route.add_dimensions(**{contract.SERVICE_DIMENSION: SERVICE})
    by_route.add_metric(contract.REQUESTS_METRIC, MetricUnit.Count, 1)
    by_route.add_metric(contract.LATENCY_METRIC, MetricUnit.Milliseconds, round(latency_ms, 3))
    by_route.add_metric(contract.SERVER_ERRORS_METRIC, MetricUnit.Count, 1 if status >= 500 else 0)
    by_route.add_metric(contract.URL_FAILURES_METRIC, MetricUnit.Count, 1 if outcome.startswith("url_") else 0)
    by_route.flush_metrics()
    by_outcome = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    by_outcome.add_dimension(contract.ROUTE_DIMENSION, route)
    by_outcome.add_dimension(contract.OUTCOME_DIMENSION, outcome)
    by_outcome.add_metric(contract.REQUESTS_METRIC, MetricUnit.Count, 1)
    by_outcome.flush_metrics()


def record_embedded(images: int, texts: int) -> None:
    """One call of the embedder: ``ImagesEmbedded``, ``TextsEmbedded`` and its ``BatchSize``."""
    if not _emitting:
        return
    metrics.add_metric(contract.IMAGES_EMBEDDED_METRIC, MetricUnit.Count, images)
    metrics.add_metric(contract.TEXTS_EMBEDDED_METRIC, MetricUnit.Count, texts)
    metrics.add_metric(contract.BATCH_SIZE_METRIC, MetricUnit.Count, images + texts)


def record_library_adds(results: list) -> list:
    """Counts a library add's outcomes (``ImagesAdded``, ``DuplicatesRefused``,
    ``ExactDuplicatesRefused``) and returns the results unchanged."""
    if _emitting:
        duplicates = [result for result in results if hasattr(result, "match")]
        exact = sum(1 for result in duplicates if getattr(result, "exact", False))
        added = sum(1 for result in results if type(result).__name__ == "Added")
        metrics.add_metric(contract.IMAGES_ADDED_METRIC, MetricUnit.Count, added)
        metrics.add_metric(contract.DUPLICATES_REFUSED_METRIC, MetricUnit.Count, len(duplicates) - exact)
        metrics.add_metric(contract.EXACT_DUPLICATES_REFUSED_METRIC, MetricUnit.Count, exact)
    return results


def record_import_progress(*, imported: int, duplicates: int, failed: int) -> None:
    """An import's progress since the last call: images stored, refused as duplicates, failed.

    Call it from the import's Lambda function (wrapped by ``lambda_entry``) after each chunk.
    """
    if not _emitting:
        return
    metrics.add_metric(contract.IMPORTED_IMAGES_METRIC, MetricUnit.Count, imported)
    metrics.add_metric(contract.IMPORT_DUPLICATES_METRIC, MetricUnit.Count, duplicates)
    metrics.add_metric(contract.IMPORT_FAILURES_METRIC, MetricUnit.Count, failed)


# --- the Lambda entry point ---------------------------------------------------------------------


def lambda_entry(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """Wraps a Lambda handler: JSON logs with the invocation's context and API Gateway's request id
    (``correlation_id``), metrics flushed after every event (and ``ColdStart``), an X-Ray
    subsegment for the handler when tracing is on (never its response: vectors, images)."""
    global _emitting
    _emitting = True
    use_json_logs(os.environ.get(contract.LOG_LEVEL_VARIABLE, contract.DEFAULT_LOG_LEVEL))

    def lambda_handler(event: dict, context: Any) -> Any:  # the trace names it "## lambda_handler"
        return handler(event, context)

    wrapped = logger.inject_lambda_context(
        lambda_handler, correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
    )
    wrapped = metrics.log_metrics(wrapped, capture_cold_start_metric=True)
    if tracer is not None:
        wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)

    def entry(event: dict, context: Any) -> Any:
        # A request with no work to count (a ping, the explorer) has only its request lines, and
        # Powertools warns when the per-invocation metrics are empty.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            return wrapped(event, context)

    return entry
