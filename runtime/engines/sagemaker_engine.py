"""The front function's engine: a SageMaker endpoint computes the vectors.

Images are prepared here (decoded at reduced scale, cropped to the model's input size) and sent
as lossless PNGs in one batch request to the endpoint's ``/invocations``, which answers exactly as
the API's batch mode does. Nothing here imports torch.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from runtime.engines import l2_normalize
from runtime.errors import Overloaded, UpstreamError
from runtime.settings import Settings
from runtime.transforms import encode_png


class SageMakerEngine:
    def __init__(self, settings: Settings, client=None):
        if not settings.sagemaker_endpoint:
            raise ValueError("the sagemaker engine needs IMSIM_SAGEMAKER_ENDPOINT")
        self.endpoint = settings.sagemaker_endpoint
        self.image_size = settings.image_size
        self.model_version = settings.model_version
        self.dimension = 512
        self._client = client

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        inputs = [{"img": base64.b64encode(encode_png(image)).decode("ascii")} for image in pixels]
        return self._invoke(inputs)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._invoke([{"text": text} for text in texts])

    def _invoke(self, inputs: list[dict]) -> np.ndarray:
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
        return l2_normalize(np.asarray(answer["results"], dtype=np.float32))

    def _runtime(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker-runtime")
        return self._client


def _is_busy(exc) -> bool:
    """SageMaker throttled the call, or the container answered 503 (its in-flight limit)."""
    error = exc.response.get("Error", {})
    if error.get("Code") in ("ThrottlingException", "ServiceUnavailable"):
        return True
    return error.get("Code") == "ModelError" and exc.response.get("OriginalStatusCode") == 503
