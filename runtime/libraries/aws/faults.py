"""How the AWS store reads a failed AWS call: busy (try again later) or a fault a retry would not mend.

Busy is throttling, a service that says it is unavailable, and a timeout, by the error codes the
services' botocore models declare (``tests/runtime/libraries/test_aws_contracts.py`` holds these
names to the models: s3vectors declares ``TooManyRequestsException``, not ``ThrottlingException``).
A busy call answers 503 with ``Retry-After`` (``library_busy`` for the library's own index,
``overloaded`` for the registry every library shares), and the import worker retries its batch.
Anything else (AccessDenied, Validation, NotFound, an internal error the client's own retries did
not mend) is ``store_error`` 502, and an import item fails with it.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError, ConnectionError, ConnectTimeoutError, ReadTimeoutError

from runtime.errors import Overloaded, UpstreamError

log = logging.getLogger("runtime.libraries")

S3_VECTORS = "S3 Vectors"
DYNAMODB = "DynamoDB"
SERVICE_MODELS = {S3_VECTORS: "s3vectors", DYNAMODB: "dynamodb"}
"""Our name of a service -> its botocore model."""

BUSY_CODES: dict[str, frozenset[str]] = {
    S3_VECTORS: frozenset({"TooManyRequestsException", "ServiceUnavailableException", "RequestTimeoutException"}),
    DYNAMODB: frozenset({"ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException"}),
}
BUSY_ANSWER_CODES = {S3_VECTORS: "library_busy", DYNAMODB: "overloaded"}
NOT_FOUND = "NotFoundException"
"""S3 Vectors' answer for an index that is gone (DeleteIndex of a deleted library is done already)."""
CONDITION_FAILED = "ConditionalCheckFailedException"
"""DynamoDB's answer to a conditional write that found the item in another state."""


def error_code(exc: Exception) -> str:
    """The AWS error code of a failed call, or what kind of transport failure it was."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "error"))
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
        return "timeout"
    return "unreachable"


def is_busy(service: str, exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        return error_code(exc) in BUSY_CODES[service]
    return isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, ConnectionError))


def upstream(service: str, operation: str, exc: Exception) -> Overloaded | UpstreamError:
    """The API error for a call that failed after the client's own retries."""
    code = error_code(exc)
    if is_busy(service, exc):
        log.warning("%s %s busy: %s", service, operation, exc)
        return Overloaded(
            f"library store: {service} {operation} is busy ({code}); retry shortly", code=BUSY_ANSWER_CODES[service]
        )
    log.error("%s %s failed: %s", service, operation, exc)
    return UpstreamError(f"library store: {service} {operation} failed ({code})", code="store_error")
