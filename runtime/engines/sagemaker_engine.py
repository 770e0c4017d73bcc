"""The front function's engine: a SageMaker endpoint computes the vectors.

Images are prepared here (decoded at reduced scale, cropped to the model's input size) and sent
as lossless PNGs in one batch request to the endpoint's ``/invocations``, which answers exactly as
the API's batch mode does. Nothing here imports torch.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.engines.catalog import find
from runtime.engines.priority import INTERACTIVE
from runtime.errors import Overloaded, UpstreamError
from runtime.inputs.images import ImageSpec, catalog_spec, encode_png
from runtime.settings import Settings
from runtime.vectors import Vectors, l2_normalize

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

    from runtime.engines import Pixels
    from runtime.engines.priority import Priority

Input = dict[str, str]
"""One input of the endpoint's batch mode: ``{"img": base64 PNG}`` or ``{"text": ...}``."""

# InvokeEndpoint takes at most 6 MB (6,291,456 bytes); stay well under it with the JSON envelope.
PAYLOAD_BUDGET = 4_500_000


class SageMakerEngine:
    def __init__(self, settings: Settings, client: Any = None, payload_budget: int | None = None):
        if not settings.sagemaker_endpoint:
            raise ValueError("the sagemaker engine needs IMSIM_SAGEMAKER_ENDPOINT")
        self.endpoint = settings.sagemaker_endpoint
        # The endpoint's model is not in this process: its facts come from the catalog when it lists
        # the model, else from the settings (IMSIM_IMAGE_SIZE, IMSIM_DIMENSION).
        listed = find(settings.model, settings.pretrained)
        self.spec = catalog_spec(listed) if listed else ImageSpec(size=settings.image_size)
        self.model_version = settings.model_version
        self.dimension = listed.dimension if listed else settings.dimension
        self._client = client
        self.payload_budget = payload_budget or PAYLOAD_BUDGET

    @property
    def image_size(self) -> int:
        return self.spec.size

    def encode_images(self, pixels: Pixels, priority: Priority = INTERACTIVE) -> Vectors:
        inputs = [{"img": base64.b64encode(encode_png(image)).decode("ascii")} for image in pixels]
        return self._invoke(inputs)

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        return self._invoke([{"text": text} for text in texts])

    def _invoke(self, inputs: list[Input]) -> Vectors:
        """One InvokeEndpoint call per chunk of inputs that fits SageMaker's payload limit."""
        chunks = payload_chunks(inputs, self.payload_budget)
        return l2_normalize(np.concatenate([self._invoke_once(chunk) for chunk in chunks]))

    def _invoke_once(self, inputs: list[Input]) -> Vectors:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._runtime().invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps({"inputs": inputs}).encode(),
            )
            answer = json.loads(response["Body"].read())
        except ClientError as exc:
            if _is_busy(exc):
                raise Overloaded(f"the model endpoint {self.endpoint} is busy; retry shortly") from exc
            raise UpstreamError(f"the model endpoint {self.endpoint} failed: {exc}") from exc
        except (BotoCoreError, ValueError) as exc:
            raise UpstreamError(f"the model endpoint {self.endpoint} failed: {exc}") from exc
        self.model_version = answer.get("model_version", self.model_version)
        return np.asarray(answer["results"], dtype=np.float32)

    def _runtime(self) -> Any:  # a boto3 sagemaker-runtime client
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker-runtime")
        return self._client


def payload_chunks(inputs: list[Input], budget: int = PAYLOAD_BUDGET) -> list[list[Input]]:
    """Consecutive groups of inputs whose JSON stays under ``budget`` bytes (one input may exceed it)."""
    chunks: list[list[Input]] = [[]]
    size = 0
    for item in inputs:
        item_size = len(json.dumps(item)) + 2
        if chunks[-1] and size + item_size > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item_size
    return chunks


BUSY_CODES = ("ThrottlingException", "ServiceUnavailable")
"""ServiceUnavailable is InvokeEndpoint's declared error; ThrottlingException is one of AWS's common errors."""


def _is_busy(exc: ClientError) -> bool:
    """SageMaker throttled the call, or the container answered 503 (its in-flight limit)."""
    error = exc.response.get("Error", {})
    if error.get("Code") in BUSY_CODES:
        return True
    return error.get("Code") == "ModelError" and exc.response.get("OriginalStatusCode") == 503
