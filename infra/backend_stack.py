"""Backend nested stack: the function behind the API, and on the sagemaker backend its GPU endpoint.

- lambda: the runtime on ONNX Runtime with the baked model in one function (the ``model`` image). The
  model loads at init; the timeout stays under API Gateway's 29 s integration limit.
- sagemaker: a light front function (the ``front`` image, no torch) that prepares the inputs and
  calls the endpoint for the vectors, plus the endpoint itself.

Both run the same ASGI app (``handler.handler``), configured by ``IMSIM_*`` environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aws_cdk import Aws, CfnCondition, Duration, Fn
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import LAMBDA_ENGINE, Config
from infra.environment import settings_environment
from infra.functions import ContainerFunction
from infra.images_stack import ImagesStack
from infra.nag import acknowledge, resource_finding
from infra.nested import NestedInputs, ParameterizedNestedStack, as_number
from infra.permissions import library_statements, s3_objects_arn, s3_read_statement
from infra.sagemaker_endpoint import SageMakerEndpoint

# API Gateway gives up on an integration after 29 s; the function stops first, so its own log
# records the timeout.
API_FUNCTION_TIMEOUT = Duration.seconds(28)
FRONT_MEMORY_MB = 1024  # decodes and crops images; the model runs on the endpoint


@dataclass(frozen=True)
class BackendInputs(NestedInputs):
    NUMBERS = frozenset({"memory_size"})

    authorization: str
    log_group_name: str
    vector_bucket_name: str
    """Empty when the libraries are off (so are the two below)."""
    registry_table_name: str
    registry_table_arn: str
    memory_size: str | None = None
    """lambda backend: the function's memory in MB."""
    instance_type: str | None = None
    """sagemaker backend: the endpoint's instance type."""
    endpoint_name: str | None = None
    """sagemaker backend: the endpoint's name."""
    import_state_machine_arn: str | None = None
    """Bulk imports (infra/imports_stack.py); empty when they are off (so are the three below)."""
    import_table_name: str | None = None
    import_results_bucket: str | None = None
    import_policy_arn: str | None = None
    import_worker_role_name: str | None = None
    """sagemaker backend: the import worker's role, which this stack lets call the endpoint."""


class BackendStack(ParameterizedNestedStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        images: ImagesStack,
        inputs: BackendInputs,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, construct_id, description=f"Image Similarity: {config.backend} backend", inputs=inputs, **kwargs
        )
        self.config = config
        self.inputs = inputs = self.typed_inputs(BackendInputs)
        self.has_libraries = CfnCondition(
            self, "HasLibraries", expression=Fn.condition_not(Fn.condition_equals(inputs.vector_bucket_name, ""))
        )
        self.endpoint: SageMakerEndpoint | None = None
        if config.backend == "lambda":
            assert images.model is not None and inputs.memory_size is not None
            self.api = self._function(
                images.model,
                memory=as_number(inputs.memory_size),
                version_note=Fn.sub("memory ${MemorySize} MB", {"MemorySize": inputs.memory_size}),
                engine_settings={"engine": LAMBDA_ENGINE},
            )
        else:
            assert images.sagemaker is not None and inputs.endpoint_name and inputs.instance_type
            self.endpoint = SageMakerEndpoint(
                self,
                "Embedder",
                image=images.sagemaker,
                name=inputs.endpoint_name,
                instance_type=inputs.instance_type,
                min_instances=config.sagemaker_min_instances,
                max_instances=config.sagemaker_max_instances,
                invocations_per_instance=config.sagemaker_invocations_per_instance,
            )
            self.api = self._function(
                images.front,
                memory=FRONT_MEMORY_MB,
                version_note="",
                engine_settings={"engine": "sagemaker", "sagemaker_endpoint": self.endpoint.endpoint_name},
            )
            self.api.role.add_to_policy(self.endpoint.invoke_statement())
            self._grant_import_worker(self.endpoint)
        self._grant_libraries()
        self._grant_s3_reads()
        self._grant_imports()

    def _function(
        self,
        image: ecr_assets.DockerImageAsset,
        *,
        memory: int | float,
        version_note: str,
        engine_settings: dict[str, str],
    ) -> ContainerFunction:
        config = self.config
        environment = settings_environment(
            **engine_settings,
            model=config.model_arch,
            pretrained=config.model_pretrained,
            image_size=str(config.image_size),
            # "off": the runtime answers library requests with a clear error instead of failing at init.
            store=Fn.condition_if(self.has_libraries.logical_id, "s3vectors", "off").to_string(),
            vector_bucket=self.inputs.vector_bucket_name,
            registry_table=self.inputs.registry_table_name,
            s3_allowed_buckets=",".join(config.s3_read_buckets),
            auth=self.inputs.authorization,
            explorer="false",  # the explorer has a function of its own
            cors_origin=config.cors_origin,  # API Gateway answers preflights; the app the rest
            # Bulk imports run on Step Functions (infra/imports_stack.py); empty when the libraries are off.
            import_state_machine=self.inputs.import_state_machine_arn or "",
            import_table=self.inputs.import_table_name or "",
            import_results_bucket=self.inputs.import_results_bucket or "",
        )
        return ContainerFunction(
            self,
            "ApiFunction",
            image=image,
            description=f"Image Similarity API ({config.backend} backend, {config.model_version})",
            log_group_name=self.inputs.log_group_name,
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
        statements = library_statements(self.inputs.vector_bucket_name, self.inputs.registry_table_arn)
        policy = iam.Policy(self, "LibraryAccess", roles=[self.api.role], statements=statements)
        cast(iam.CfnPolicy, policy.node.default_child).cfn_options.condition = self.has_libraries
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "each library is one S3 Vectors index that the API creates and deletes at run time by "
            "name, so the index ARNs are only known as <vector bucket ARN>/index/*; the bucket is "
            "this stack's own",
            applies_to=resource_finding(self, statements[0].resources[0]),
        )

    def _grant_imports(self) -> None:
        """The imports stack's policy for the API (start, follow, cancel imports), when it exists."""
        role = cast(iam.CfnRole, self.api.role.node.default_child)
        policy = Fn.condition_if(self.has_libraries.logical_id, self.input("ImportPolicyArn"), Aws.NO_VALUE)
        role.add_property_override("ManagedPolicyArns", [policy])

    def _grant_import_worker(self, endpoint: SageMakerEndpoint) -> None:
        """The import worker (imports stack, which exists when the libraries do) calls the endpoint too;
        the grant lives here, beside the endpoint, so it can name the endpoint's own ARN."""
        assert self.inputs.import_worker_role_name is not None
        role = iam.Role.from_role_name(self, "ImportWorkerRole", self.inputs.import_worker_role_name)
        policy = iam.Policy(self, "ImportWorkerEndpointAccess", roles=[role], statements=[endpoint.invoke_statement()])
        cast(iam.CfnPolicy, policy.node.default_child).cfn_options.condition = self.has_libraries

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
