"""The SageMaker backend's GPU endpoint: model, endpoint config, endpoint and autoscaling.

The endpoint's name is the stack's name and the instance type (``ImageSimilarity-ml-g4dn-xlarge``):
a known name lets the logs stack make its log group with a retention, and a new name for a new
instance type makes CloudFormation build a new endpoint (and register it for autoscaling) before it
removes the old one, where updating the endpoint in place would fail (SageMaker refuses to change
the instance type of a variant registered for autoscaling).
"""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.environment import settings_environment
from infra.nag import acknowledge, resource_finding
from infra.permissions import log_write_statement
from infra.sagemaker_hosting import INFERENCE_AMI

VARIANT = "AllTraffic"
STARTUP_TIMEOUT_S = 600  # the image carries CUDA torch and the weights: first pull and load are slow


def endpoint_name(stack_name: str, instance_type: str) -> str:
    """``<stack name>-<instance type with '-' for '.'>``, computed by CloudFormation."""
    return Fn.join("-", [stack_name, Fn.join("-", Fn.split(".", instance_type))])


def endpoint_log_group_name(name: str) -> str:
    return f"/aws/sagemaker/Endpoints/{name}"


class SageMakerEndpoint(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: ecr_assets.DockerImageAsset,
        name: str,
        instance_type: str,
        min_instances: int,
        max_instances: int,
        invocations_per_instance: int,
    ) -> None:
        super().__init__(scope, construct_id)
        role = self._execution_role(image, name)
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri,
                mode="SingleModel",
                # cuda, not auto: a host whose driver cannot run the image's CUDA fails start-up, hence
                # /ping and the deployment, instead of serving from the CPU of a GPU-billed instance.
                environment=settings_environment(device="cuda"),
            ),
        )
        # SageMaker checks that it can pull the image when the model is made.
        model.node.add_dependency(role.node.find_child("DefaultPolicy"))
        config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    model_name=model.attr_model_name,
                    instance_type=instance_type,
                    initial_instance_count=min_instances,
                    initial_variant_weight=1,
                    container_startup_health_check_timeout_in_seconds=STARTUP_TIMEOUT_S,
                    inference_ami_version=INFERENCE_AMI,  # the driver the image's CUDA needs (see there)
                )
            ],
        )
        endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=name, endpoint_config_name=config.attr_endpoint_config_name
        )
        self.endpoint_name = endpoint.attr_endpoint_name
        self.endpoint_arn = endpoint.ref  # Ref of AWS::SageMaker::Endpoint is its ARN
        self._autoscaling(endpoint, min_instances, max_instances, invocations_per_instance)

    def invoke_statement(self) -> iam.PolicyStatement:
        """InvokeEndpoint on this endpoint, by its own ARN: SageMaker's ARNs are lower case and IAM
        compares them case-sensitively, so one built from the (mixed-case) name would never match."""
        return iam.PolicyStatement(
            sid="InvokeOwnEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[self.endpoint_arn]
        )

    def _execution_role(self, image: ecr_assets.DockerImageAsset, name: str) -> iam.Role:
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker pulls the embedding image and writes the endpoint's logs",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PullEmbeddingImage",
                resources=[image.repository.repository_arn],
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            )
        )
        role.add_to_policy(iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        # SageMaker's documented execution role for hosting publishes the endpoint's metrics.
        role.add_to_policy(
            iam.PolicyStatement(sid="EndpointMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"])
        )
        logs_statement = log_write_statement(endpoint_log_group_name(name))
        role.add_to_policy(logs_statement)
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource to scope to (IAM "
            "accepts only '*'); the image pull itself is limited to the CDK asset repository",
            applies_to="Resource::*",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "SageMaker names the endpoint's log streams after its instances; the statement is limited "
            "to this endpoint's own log group",
            applies_to=resource_finding(self, logs_statement.resources[0]),
        )
        return role

    def _autoscaling(
        self, endpoint: sagemaker.CfnEndpoint, min_instances: int, max_instances: int, invocations_per_instance: int
    ) -> None:
        # No RoleARN: Application Auto Scaling uses its service-linked role for SageMaker.
        target = appscaling.CfnScalableTarget(
            self,
            "ScalableTarget",
            service_namespace="sagemaker",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=Fn.join("", ["endpoint/", endpoint.attr_endpoint_name, f"/variant/{VARIANT}"]),
            min_capacity=min_instances,
            max_capacity=max_instances,
        )
        appscaling.CfnScalingPolicy(
            self,
            "InvocationsScaling",
            policy_name="invocations-per-instance",
            policy_type="TargetTrackingScaling",
            scaling_target_id=target.ref,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=invocations_per_instance,
                scale_in_cooldown=300,
                scale_out_cooldown=60,
                predefined_metric_specification=appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                    predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                ),
            ),
        )
