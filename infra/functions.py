"""A Lambda function run from one of the container image assets, with a role of its own.

The role can write to the function's own log group and nothing else until the caller adds what
the function uses. Lambda pulls the image when the function is created or updated, with the
deploying role's permissions (same account), so the function's role needs no ECR permission.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource, Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge, resource_finding
from infra.permissions import log_write_statement


class ContainerFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: ecr_assets.DockerImageAsset,
        description: str,
        log_group_name: str,
        memory_size: int | float,
        timeout: Duration,
        environment: dict[str, str],
        command: list[str] | None = None,
        reserved_concurrency: int = 0,
        provisioned_concurrency: int = 0,
        version_note: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs the function: {description}",
        )
        logs_statement = log_write_statement(log_group_name)
        self.role.add_to_policy(logs_statement)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Lambda names the log streams itself (one per instance); the statement is limited to this "
            "function's own log group",
            applies_to=resource_finding(self, logs_statement.resources[0]),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            code=lambda_.Code.from_ecr_image(image.repository, tag_or_digest=image.image_tag, cmd=command),
            handler=lambda_.Handler.FROM_IMAGE,
            runtime=lambda_.Runtime.FROM_IMAGE,
            architecture=lambda_.Architecture.X86_64,
            memory_size=memory_size,
            timeout=timeout,
            environment=environment,
            role=self.role,
            log_group=logs.LogGroup.from_log_group_name(self, "LogGroup", log_group_name),
            reserved_concurrent_executions=reserved_concurrency or None,
            # A version is immutable: a note that changes with the parameters it depends on
            # (e.g. the memory size) makes CloudFormation publish a new one when they change.
            current_version_options=lambda_.VersionOptions(description=version_note or None),
        )
        # The L2 makes the function depend on the role too, which the role's ARN already does
        # (cfn-lint W3005): depend on the role's policy only.
        policy = cast(CfnResource, self.role.node.find_child("DefaultPolicy").node.default_child)
        cast(CfnResource, self.function.node.default_child).add_override("DependsOn", [policy.logical_id])
        self.invoke_arn = self.function.function_arn
        """What API Gateway invokes: the ``live`` alias when provisioned concurrency is on."""
        if provisioned_concurrency:
            alias = lambda_.Alias(
                self,
                "Live",
                alias_name="live",
                version=self.function.current_version,
                provisioned_concurrent_executions=provisioned_concurrency,
            )
            self.invoke_arn = alias.function_arn
