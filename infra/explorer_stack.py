"""Explorer nested stack: the API Explorer's function (Swagger UI for this API).

It runs the ``front`` image (no model, no torch) with the command ``explorer_handler.handler``; the
page computes the stage's URL from the request, so it needs only to know the authorization. The
stack is conditional on the ``ApiExplorer`` parameter; the API stack routes ``GET /api-explorer``
and ``GET /api-explorer/{proxy+}`` to it only while it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from constructs import Construct

from infra.environment import settings_environment
from infra.functions import ContainerFunction
from infra.images_stack import ImagesStack
from infra.nested import NestedInputs, ParameterizedNestedStack

EXPLORER_MEMORY_MB = 512
EXPLORER_TIMEOUT = Duration.seconds(10)


@dataclass(frozen=True)
class ExplorerInputs(NestedInputs):
    authorization: str
    log_group_name: str


class ExplorerStack(ParameterizedNestedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, images: ImagesStack, inputs: ExplorerInputs, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: API Explorer", inputs=inputs, **kwargs)
        inputs = self.typed_inputs(ExplorerInputs)
        self.explorer = ContainerFunction(
            self,
            "ExplorerFunction",
            image=images.front,
            description="Image Similarity API Explorer (Swagger UI)",
            command=["explorer_handler.handler"],
            log_group_name=inputs.log_group_name,
            memory_size=EXPLORER_MEMORY_MB,
            timeout=EXPLORER_TIMEOUT,
            environment=settings_environment(auth=inputs.authorization),
        )
        self.function_arn = self.explorer.invoke_arn
