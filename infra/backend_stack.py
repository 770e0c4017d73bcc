"""Backend nested stack: the function behind the API, and on the sagemaker backend its GPU endpoint.

- lambda: the runtime on ONNX Runtime with the baked model in one function (the ``model`` image). The
  model loads at init; the timeout stays under API Gateway's 29 s integration limit.
- sagemaker: a light front function (the ``front`` image, no torch) that prepares the inputs and
  calls the endpoint for the vectors, plus the endpoint itself.

Both run the same ASGI app (``handler.handler``), configured by ``IMSIM_*`` environment variables.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnCondition, Duration, Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import LAMBDA_ENGINE, Config
from infra.functions import ContainerFunction
from infra.images_stack import ImagesStack
from infra.nag import acknowledge, resource_finding
from infra.nested import ParameterizedNestedStack
from infra.permissions import library_statements, s3_objects_arn, s3_read_statement
from infra.sagemaker_endpoint import SageMakerEndpoint

# API Gateway gives up on an integration after 29 s; the function stops first, so its own log
# records the timeout.
API_FUNCTION_TIMEOUT = Duration.seconds(28)
FRONT_MEMORY_MB = 1024  # decodes and crops images; the model runs on the endpoint


class BackendStack(ParameterizedNestedStack):
    """Inputs: ``Authorization``, ``LogGroupName``, ``VectorBucketName`` and ``RegistryTableArn``
    and ``RegistryTableName`` (empty when the libraries are off), and ``MemorySize`` (lambda) or
    ``InstanceType`` and ``EndpointName`` (sagemaker)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, images: ImagesStack, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"Image Similarity: {config.backend} backend", **kwargs)
        self.config = config
        self.has_libraries = CfnCondition(
            self, "HasLibraries", expression=Fn.condition_not(Fn.condition_equals(self.input("VectorBucketName"), ""))
        )
        self.endpoint: SageMakerEndpoint | None = None
        if config.backend == "lambda":
            self.api = self._function(
                images.model,
                memory=self.input_number("MemorySize"),
                version_note=Fn.sub("memory ${MemorySize} MB", {"MemorySize": self.input("MemorySize")}),
                engine_env={"IMSIM_ENGINE": LAMBDA_ENGINE},
            )
        else:
            self.endpoint = SageMakerEndpoint(
                self,
                "Embedder",
                image=images.sagemaker,
                name=self.input("EndpointName"),
                instance_type=self.input("InstanceType"),
                min_instances=config.sagemaker_min_instances,
                max_instances=config.sagemaker_max_instances,
                invocations_per_instance=config.sagemaker_invocations_per_instance,
            )
            self.api = self._function(
                images.front,
                memory=FRONT_MEMORY_MB,
                version_note="",
                engine_env={"IMSIM_ENGINE": "sagemaker", "IMSIM_SAGEMAKER_ENDPOINT": self.endpoint.endpoint_name},
            )
            self.api.role.add_to_policy(
                iam.PolicyStatement(
                    sid="InvokeOwnEndpoint",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=[self.endpoint.endpoint_arn],
                )
            )
        self._grant_libraries()
        self._grant_s3_reads()
        self._grant_imports()

    def _function(self, image, *, memory, version_note: str, engine_env: dict[str, str]) -> ContainerFunction:
        config = self.config
        environment = {
            **engine_env,
            "IMSIM_MODEL": config.model_arch,
            "IMSIM_PRETRAINED": config.model_pretrained,
            "IMSIM_IMAGE_SIZE": str(config.image_size),
            # "off": the runtime answers library requests with a clear error instead of failing at init.
            "IMSIM_STORE": Fn.condition_if(self.has_libraries.logical_id, "s3vectors", "off").to_string(),
            "IMSIM_VECTOR_BUCKET": self.input("VectorBucketName"),
            "IMSIM_REGISTRY_TABLE": self.input("RegistryTableName"),
            "IMSIM_S3_ALLOWED_BUCKETS": ",".join(config.s3_read_buckets),
            "IMSIM_AUTH": self.input("Authorization"),
            "IMSIM_EXPLORER": "false",  # the explorer has a function of its own
            "IMSIM_CORS_ORIGIN": config.cors_origin,  # API Gateway answers preflights; the app the rest
            # Bulk imports run on Step Functions (infra/imports_stack.py); empty when the libraries are off.
            "IMSIM_IMPORT_STATE_MACHINE": self.input("ImportStateMachineArn"),
            "IMSIM_IMPORT_TABLE": self.input("ImportTableName"),
            "IMSIM_IMPORT_RESULTS_BUCKET": self.input("ImportResultsBucket"),
        }
        return ContainerFunction(
            self,
            "ApiFunction",
            image=image,
            description=f"Image Similarity API ({config.backend} backend, {config.model_version})",
            log_group_name=self.input("LogGroupName"),
            memory_size=memory,
            timeout=API_FUNCTION_TIMEOUT,
            environment=environment,
            reserved_concurrency=config.reserved_concurrency,
            provisioned_concurrency=config.provisioned_concurrency,
            version_note=version_note,
        )

    def _grant_libraries(self) -> None:
        """Exactly the calls the library store makes (S3 Vectors and the DynamoDB registry), on this
        stack's bucket and table only."""
        statements = library_statements(self.input("VectorBucketName"), self.input("RegistryTableArn"))
        policy = iam.Policy(self, "LibraryAccess", roles=[self.api.role], statements=statements)
        policy.node.default_child.cfn_options.condition = self.has_libraries
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "each library is one S3 Vectors index that the API creates and deletes at run time by "
            "name, so the index ARNs are only known as <vector bucket ARN>/index/*; the bucket is "
            "this stack's own",
            applies_to=resource_finding(self, statements[0].resources[1]),
        )

    def _grant_imports(self) -> None:
        """The imports stack's policy for the API (start, follow, cancel imports), when it exists."""
        role = self.api.role.node.default_child
        policy = Fn.condition_if(self.has_libraries.logical_id, self.input("ImportPolicyArn"), Aws.NO_VALUE)
        role.add_property_override("ManagedPolicyArns", [policy])

    def _grant_s3_reads(self) -> None:
        buckets = self.config.s3_read_buckets
        if not buckets:
            return
        self.api.role.add_to_policy(s3_read_statement(buckets))
        for bucket in buckets:
            acknowledge(
                self.api.role,
                "AwsSolutions-IAM5",
                f"the deployer listed bucket {bucket} in the s3_read_buckets flag: s3:// inputs may "
                "name any object in it (read only, s3:GetObject)",
                applies_to=resource_finding(self, s3_objects_arn(bucket)),
            )
