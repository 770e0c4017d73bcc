"""The root stack: parameters, conditions, the nested stacks wired together, and the outputs.

Nested stacks, one concern each: Logs, Images and LibraryStorage (always; see storage_stack.py), Backend,
Api and Monitoring (``ImageSimilarity=yes``), Explorer (``ImageSimilarity=yes`` and
``ApiExplorer=yes``), Firewall (``ImageSimilarity=yes`` and ``Waf=yes``). Values that come from a
conditional stack reach the others through ``Fn::If`` here (or go to a stack whose condition implies
the other's), so no stack refers to one that may not exist.
"""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import Aws, CfnCondition, CfnMapping, CfnOutput, CfnResource, Fn, NestedStack, Stack, Token
from constructs import Construct

from infra.api_stack import API_KEY_OUTPUT, ApiInputs, ApiStack
from infra.backend_stack import BackendInputs, BackendStack
from infra.config import SOLUTION_NAME, SOLUTION_VERSION, Config
from infra.explorer_stack import ExplorerInputs, ExplorerStack
from infra.images_stack import ImagesStack
from infra.imports_stack import ImportsStack
from infra.logs_stack import LogsInputs, LogsStack
from infra.monitoring_stack import MonitoringStack
from infra.parameters import RootParameters, add_root_parameters
from infra.sagemaker_endpoint import endpoint_name
from infra.storage_stack import StorageStack
from infra.waf_stack import WEB_ACL_OUTPUT, WafInputs, WafStack

# The console's host is not derived from the URL suffix (aws-cn: amazonaws.com.cn vs amazonaws.cn).
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


class ImageSimilarityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"{SOLUTION_NAME} v{SOLUTION_VERSION} ({config.backend} backend, {config.model_version})",
            **kwargs,
        )
        params = add_root_parameters(self, config)
        self.params = params
        auth = params.authorization.value_as_string

        compute = params.compute.value_as_string
        # Computed once here: the logs stack names the endpoint's log group after it.
        endpoint = endpoint_name(config.stack_name, compute) if config.backend == "sagemaker" else None
        self.logs = LogsStack(self, "Logs", config=config, inputs=LogsInputs(endpoint_name=endpoint))
        self.images = ImagesStack(self, "Images", config=config)
        # Unconditional unless synthesized for a Region without S3 Vectors: see infra/storage_stack.py.
        self.storage = StorageStack(self, "LibraryStorage", condition=None if config.libraries else params.libraries_on)

        def if_libraries(value: str) -> str:
            return _if(params.libraries_on, value)

        self.explorer = ExplorerStack(
            self,
            "Explorer",
            images=self.images,
            condition=params.explorer_on,
            inputs=ExplorerInputs(authorization=auth, log_group_name=self.logs.explorer_logs.log_group_name),
        )
        self.imports = ImportsStack(
            self,
            "Imports",
            config=config,
            images=self.images,
            condition=params.imports_on,
            number_inputs=frozenset({"MemorySize"}),
            inputs={
                "VectorBucketName": self.storage.vector_bucket_name,
                "RegistryTableName": self.storage.registry_table_name,
                "RegistryTableArn": self.storage.registry_table_arn,
                "ResultsBucketName": self.storage.import_results_bucket_name,
                "MaxConcurrency": params.import_concurrency.value_as_string,
                "LogGroupName": self.logs.import_worker_logs.log_group_name,
                "StateMachineLogGroupName": self.logs.import_state_machine_logs.log_group_name,
                **({"MemorySize": compute} if config.backend == "lambda" else {"EndpointName": endpoint}),
            },
        )

        def if_imports(value: str) -> str:
            return _if(params.imports_on, value)

        self.backend = BackendStack(
            self,
            "Backend",
            config=config,
            images=self.images,
            condition=params.feature_on,
            inputs=BackendInputs(
                authorization=auth,
                log_group_name=self.logs.api_function_logs.log_group_name,
                vector_bucket_name=if_libraries(self.storage.vector_bucket_name),
                registry_table_name=if_libraries(self.storage.registry_table_name),
                registry_table_arn=if_libraries(self.storage.registry_table_arn),
                memory_size=compute if config.backend == "lambda" else None,
                instance_type=compute if config.backend == "sagemaker" else None,
                endpoint_name=endpoint,
                import_state_machine_arn=if_imports(self.imports.state_machine_arn),
                import_table_name=if_imports(self.imports.table_name),
                import_results_bucket=if_imports(self.storage.import_results_bucket_name),
                import_policy_arn=if_imports(self.imports.api_policy.managed_policy_arn),
                import_worker_role_name=(
                    if_imports(self.imports.worker_role_name) if config.backend == "sagemaker" else None
                ),
            ),
        )
        self.api = ApiStack(
            self,
            "Api",
            config=config,
            condition=params.feature_on,
            inputs=ApiInputs(
                authorization=auth,
                stage_name=params.stage_name.value_as_string,
                throttling_rate_limit=params.throttling_rate.value_as_string,
                throttling_burst_limit=params.throttling_burst.value_as_string,
                explorer_enabled=_if(params.explorer_on, "yes", "no"),
                api_function_arn=self.backend.api.invoke_arn,
                explorer_function_arn=_if(params.explorer_on, self.explorer.function_arn),
                access_log_group_name=self.logs.access_logs.log_group_name,
                api_key_rate_limit=params.api_key_rate.value_as_string,
                api_key_burst_limit=params.api_key_burst.value_as_string,
                api_key_daily_quota=params.api_key_daily_quota.value_as_string,
            ),
        )
        self.waf = WafStack(
            self,
            "Firewall",
            metric_prefix=config.api_name,
            condition=params.waf_on,
            inputs=WafInputs(
                stage_arn=self.api.stage_arn,  # WafOn implies ImageSimilarityOn: the Api stack exists
                rate_limit=params.waf_rate_limit.value_as_string,
            ),
        )
        monitoring_inputs = {"StageName": self.api.stage_name, "FunctionName": self.backend.api.function.function_name}
        if self.backend.endpoint is not None:
            monitoring_inputs["EndpointName"] = self.backend.endpoint.endpoint_name
        self.monitoring = MonitoringStack(
            self, "Monitoring", config=config, condition=params.feature_on, inputs=monitoring_inputs
        )
        self._outputs(config, params)

    def _outputs(self, config: Config, params: RootParameters) -> None:
        CfnOutput(self, "BackendInUse", value=config.backend, description="The backend this stack was synthesized for")
        CfnOutput(self, "ModelVersion", value=config.model_version, description="The model baked into the images")
        CfnOutput(
            self,
            "ApiUrl",
            value=self.api.url,
            condition=params.feature_on,
            description="Base URL of the API (the stage)",
        )
        CfnOutput(
            self,
            "ImageSimilarityUrl",
            value=Fn.join("", [self.api.url, "image-similarity"]),
            condition=params.feature_on,
            description="POST here: vectors and similarity",
        )
        CfnOutput(
            self,
            "ApiExplorerUrl",
            value=Fn.join("", [self.api.url, "api-explorer"]),
            condition=params.explorer_on,
            description="The API Explorer (Swagger UI)",
        )
        hosts = CfnMapping(
            self, "ConsoleHost", mapping={partition: {"Host": host} for partition, host in CONSOLE_HOSTS.items()}
        )
        dashboard = self.monitoring.dashboard.dashboard_name
        CfnOutput(
            self,
            "DashboardName",
            value=dashboard,
            condition=params.feature_on,
            description="CloudWatch dashboard of the API and its backend",
        )
        CfnOutput(
            self,
            "DashboardUrl",
            condition=params.feature_on,
            description="The dashboard in the CloudWatch console",
            value=Fn.join(
                "",
                [
                    "https://",
                    hosts.find_in_map(Aws.PARTITION, "Host"),
                    "/cloudwatch/home?region=",
                    Aws.REGION,
                    "#dashboards:name=",
                    dashboard,
                ],
            ),
        )
        CfnOutput(
            self,
            "VectorBucketName",
            value=self.storage.vector_bucket_name,
            condition=params.libraries_on,
            description="S3 Vectors bucket of the image libraries (retained when the stack is deleted)",
        )
        CfnOutput(
            self,
            "RegistryTableName",
            value=self.storage.registry_table_name,
            condition=params.libraries_on,
            description="DynamoDB registry of the image libraries (retained when the stack is deleted)",
        )
        CfnOutput(
            self,
            API_KEY_OUTPUT,
            value=_nested_output(self.api, API_KEY_OUTPUT),
            condition=params.api_key_on,
            description="Id of the API key (ApiAuthorization API_KEY); its value: aws apigateway get-api-key "
            "--api-key <this id> --include-value --query value --output text",
        )
        CfnOutput(
            self,
            WEB_ACL_OUTPUT,
            value=_nested_output(self.waf, WEB_ACL_OUTPUT),
            condition=params.waf_on,
            description="ARN of the AWS WAF web ACL in front of the stage (Waf yes)",
        )
        if self.backend.endpoint is not None:
            CfnOutput(
                self,
                "EndpointName",
                value=self.backend.endpoint.endpoint_name,
                condition=params.feature_on,
                description="SageMaker endpoint that computes the vectors",
            )


def _nested_output(stack: NestedStack, name: str) -> str:
    """An output the nested stack declares itself (a conditional one, which CDK's references cannot be)."""
    return Token.as_string(cast(CfnResource, stack.nested_stack_resource).get_att(f"Outputs.{name}"))


def _if(condition: CfnCondition, value: str, otherwise: str = "") -> str:
    return Fn.condition_if(condition.logical_id, value, otherwise).to_string()
