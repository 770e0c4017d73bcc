"""Images nested stack: the container images the chosen backend runs, as ECR image assets.

Both Dockerfiles build with the repository root as context; the root ``.dockerignore`` sends them
only ``runtime/``, ``lambda_image/`` and ``sagemaker_image/``, and ``EXCLUDE`` keeps build outputs
out even if that file changes. ``cdk deploy`` builds and pushes the images to the CDK bootstrap
repository; this stack records which image each role runs in SSM parameters.

- model: ``lambda_image`` target ``model`` (ONNX Runtime and the model exported at build time, no
  torch), the lambda backend's function.
- front: ``lambda_image`` target ``front`` (no torch), the sagemaker backend's function and the
  API Explorer's function (both backends).
- sagemaker: ``sagemaker_image``, the sagemaker backend's GPU container.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import Config
from infra.nested import ParameterizedNestedStack

REPO_ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = [
    "cdk.out",
    ".venv",
    ".git",
    "tests",
    "bench",
    "docs",
    "infra",
    "scripts",
    "data",
    "model",
    "node_modules",
    "**/__pycache__",
    "**/*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
]


class ImagesStack(ParameterizedNestedStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: container images (ECR assets)")
        weights = {"MODEL": config.model_arch, "PRETRAINED": config.model_pretrained}
        self.front = self._image("Front", "lambda_image/Dockerfile", "front")
        self.model = None
        self.sagemaker = None
        if config.backend == "lambda":
            self.model = self._image("Model", "lambda_image/Dockerfile", "model", weights)
        else:
            self.sagemaker = self._image("SageMaker", "sagemaker_image/Dockerfile", None, weights)

    def _image(
        self, name: str, dockerfile: str, target: str | None, build_args: dict[str, str] | None = None
    ) -> ecr_assets.DockerImageAsset:
        asset = ecr_assets.DockerImageAsset(
            self,
            f"{name}Image",
            directory=str(REPO_ROOT),
            file=dockerfile,
            target=target,
            build_args=build_args,
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=EXCLUDE,
            ignore_mode=IgnoreMode.DOCKER,
            display_name=f"image-similarity {name.lower()} image",
        )
        ssm.CfnParameter(
            self,
            f"{name}ImageUri",
            type="String",
            value=asset.image_uri,
            description=f"Image Similarity: the {name.lower()} image this stack runs",
        )
        return asset
