"""The root stack: parameters, conditions, the nested stacks wired together, and the outputs.

Nested stacks, one concern each: Logs and Images (always), LibraryStorage (``Libraries=yes``), Backend,
Api and Monitoring (``ImageSimilarity=yes``), Explorer (``ImageSimilarity=yes`` and
``ApiExplorer=yes``). Values that come from a conditional stack reach the others through
``Fn::If`` here, so no stack refers to one that may not exist.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnCondition, CfnMapping, CfnOutput, Fn, Stack
from constructs import Construct

from infra.api_stack import ApiStack
from infra.backend_stack import BackendStack
from infra.config import Config
from infra.explorer_stack import ExplorerStack
from infra.images_stack import ImagesStack
from infra.imports_stack import ImportsStack
from infra.logs_stack import LogsStack
from infra.monitoring_stack import MonitoringStack
from infra.parameters import RootParameters, add_root_parameters
from infra.sagemaker_endpoint import endpoint_name
from infra.storage_stack import StorageStack

# The console's host is not derived from the URL suffix (aws-cn: amazonaws.com.cn vs amazonaws.cn).
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


class ImageSimilarityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Image Similarity API ({config.backend} backend, {config.model_version})",
            **kwargs,
        )
        params = add_root_parameters(self, config)
        self.params = params
        auth = params.authorization.value_as_string

        compute = params.compute.value_as_string
        if config.backend == "lambda":
            compute_inputs = {"MemorySize": compute}
            logs_inputs = {}
        else:
            # Computed once here: the logs stack names the endpoint's log group after it.
            logs_inputs = {"EndpointName": endpoint_name(config.stack_name, compute)}
            compute_inputs = {"InstanceType": compute, **logs_inputs}
        self.logs = LogsStack(self, "Logs", config=config, inputs=logs_inputs)
        self.images = ImagesStack(self, "Images", config=config)
        self.storage = StorageStack(self, "LibraryStorage", condition=params.libraries_on)

        def if_libraries(value: str) -> str:
            return _if(params.libraries_on, value)

        self.explorer = ExplorerStack(
            self,
            "Explorer",
            images=self.images,
            condition=params.explorer_on,
            inputs={"Authorization": auth, "LogGroupName": self.logs.explorer_logs.log_group_name},
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
                "MaxConcurrency": params.import_concurrency.value_as_string,
                "LogGroupName": self.logs.import_worker_logs.log_group_name,
                "StateMachineLogGroupName": self.logs.import_state_machine_logs.log_group_name,
                **(logs_inputs or compute_inputs),  # MemorySize (lambda) or EndpointName (sagemaker)
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
            number_inputs=frozenset({"MemorySize"}),
            inputs={
                "Authorization": auth,
                "LogGroupName": self.logs.api_function_logs.log_group_name,
                "VectorBucketName": if_libraries(self.storage.vector_bucket_name),
                "RegistryTableName": if_libraries(self.storage.registry_table_name),
                "RegistryTableArn": if_libraries(self.storage.registry_table_arn),
                "ImportStateMachineArn": if_imports(self.imports.state_machine_arn),
                "ImportTableName": if_imports(self.imports.table_name),
                "ImportResultsBucket": if_imports(self.imports.results_bucket_name),
                "ImportPolicyArn": if_imports(self.imports.api_policy.managed_policy_arn),
                **compute_inputs,
            },
        )
        self.api = ApiStack(
            self,
            "Api",
            config=config,
            condition=params.feature_on,
            inputs={
                "Authorization": auth,
                "StageName": params.stage_name.value_as_string,
                "ThrottlingRateLimit": params.throttling_rate.value_as_string,
                "ThrottlingBurstLimit": params.throttling_burst.value_as_string,
                "ExplorerEnabled": _if(params.explorer_on, "yes", "no"),
                "ApiFunctionArn": self.backend.api.invoke_arn,
                "ExplorerFunctionArn": _if(params.explorer_on, self.explorer.function_arn),
                "AccessLogGroupName": self.logs.access_logs.log_group_name,
            },
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
        CfnOutput(self, "DashboardName", value=dashboard, condition=params.feature_on)
        CfnOutput(
            self,
            "DashboardUrl",
            condition=params.feature_on,
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
        if self.backend.endpoint is not None:
            CfnOutput(
                self,
                "EndpointName",
                value=self.backend.endpoint.endpoint_name,
                condition=params.feature_on,
                description="SageMaker endpoint that computes the vectors",
            )


def _if(condition: CfnCondition, value: str, otherwise: str = "") -> str:
    return Fn.condition_if(condition.logical_id, value, otherwise).to_string()
