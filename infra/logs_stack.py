"""Logs nested stack: every log group the deployment writes to, each with a retention period.

Log groups are made here rather than left to the services, which would make them without a
retention (kept forever). The API Gateway execution-log group is the one exception: its name holds
the REST API's id, so the API stack makes it (with ``retained_log_group`` all the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import Config
from infra.nag import acknowledge
from infra.nested import NestedInputs, ParameterizedNestedStack
from infra.sagemaker_endpoint import endpoint_log_group_name


def retained_log_group(
    scope: Construct, construct_id: str, retention_days: int, name: str | None = None
) -> logs.LogGroup:
    """A log group that keeps events for ``retention_days`` and goes when the stack goes."""
    group = logs.LogGroup(scope, construct_id, log_group_name=name, removal_policy=RemovalPolicy.DESTROY)
    # The L2 takes an enum of named periods; the flag is a number of days (validated in config).
    cast(logs.CfnLogGroup, group.node.default_child).retention_in_days = retention_days
    return group


@dataclass(frozen=True)
class LogsInputs(NestedInputs):
    endpoint_name: str | None = None
    """sagemaker backend: the endpoint's name (its log group is named after it)."""


class LogsStack(ParameterizedNestedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, inputs: LogsInputs, **kwargs: Any
    ) -> None:
        super().__init__(
            scope, construct_id, description="Image Similarity: log groups with retention", inputs=inputs, **kwargs
        )
        typed = self.typed_inputs(LogsInputs)
        days = config.log_retention_days
        self.access_logs = retained_log_group(self, "ApiAccessLogs", days)
        self.api_function_logs = retained_log_group(self, "ApiFunctionLogs", days)
        self.explorer_logs = retained_log_group(self, "ExplorerFunctionLogs", days)
        self.import_worker_logs = retained_log_group(self, "ImportWorkerLogs", days)
        self.import_state_machine_logs = retained_log_group(self, "ImportStateMachineLogs", days)
        self.endpoint_logs = None
        if config.backend == "sagemaker":
            assert typed.endpoint_name is not None
            # SageMaker writes to this fixed name; made first, it gets a retention.
            self.endpoint_logs = retained_log_group(
                self, "EndpointLogs", days, name=endpoint_log_group_name(typed.endpoint_name)
            )
        if config.api_gateway_logging_role:
            _api_gateway_logging_role(self)


def _api_gateway_logging_role(scope: Construct) -> None:
    """API Gateway's account-wide CloudWatch role, without which a stage cannot log at all."""
    role = iam.Role(
        scope,
        "ApiGatewayCloudWatchRole",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
        managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
        ],
    )
    account = apigateway.CfnAccount(scope, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
    # Both are account-wide settings shared with every other API in the Region: removing this
    # stack must not switch logging off for them.
    role.apply_removal_policy(RemovalPolicy.RETAIN)
    account.apply_removal_policy(RemovalPolicy.RETAIN)
    acknowledge(
        role,
        "AwsSolutions-IAM4",
        "API Gateway's account-level logging role: the AWS-maintained policy "
        "AmazonAPIGatewayPushToCloudWatchLogs is the documented one, and the role serves every REST "
        "API in this account and Region (switch it off with -c api_gateway_logging_role=false when the "
        "account already has one)",
        applies_to="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    )
