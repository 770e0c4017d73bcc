"""Explorer nested stack: the API Explorer's function (Swagger UI for this API).

It runs the ``front`` image (no model, no torch) with the command ``explorer_handler.handler``; the
page computes the stage's URL from the request, so it needs only to know the authorization. The
stack is conditional on the ``ApiExplorer`` parameter; the API stack routes ``GET /api-explorer``
and ``GET /api-explorer/{proxy+}`` to it only while it exists.
"""

from __future__ import annotations

from aws_cdk import Duration
from constructs import Construct

from infra.functions import ContainerFunction
from infra.images_stack import ImagesStack
from infra.nested import ParameterizedNestedStack

EXPLORER_MEMORY_MB = 512
EXPLORER_TIMEOUT = Duration.seconds(10)


class ExplorerStack(ParameterizedNestedStack):
    """Inputs: ``Authorization`` and ``LogGroupName``."""

    def __init__(self, scope: Construct, construct_id: str, *, images: ImagesStack, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: API Explorer", **kwargs)
        self.explorer = ContainerFunction(
            self,
            "ExplorerFunction",
            image=images.front,
            description="Image Similarity API Explorer (Swagger UI)",
            command=["explorer_handler.handler"],
            log_group_name=self.input("LogGroupName"),
            memory_size=EXPLORER_MEMORY_MB,
            timeout=EXPLORER_TIMEOUT,
            environment={"IMSIM_AUTH": self.input("Authorization")},
        )
        self.function_arn = self.explorer.invoke_arn
