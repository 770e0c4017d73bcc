"""API nested stack: the regional REST API, its stage (throttling, access and execution logs) and
the permissions for API Gateway to invoke the functions.

A stage serves a deployment, a snapshot of the API taken when the deployment is made. The API's
shape depends on two parameters (authorization, explorer on/off), so there is one deployment per
combination, each conditional: a parameter update makes the matching one (after the API has been
updated), points the stage at it and removes the old one. Their names also carry a hash of the
definition, so a re-synthesized API is deployed too.
"""

from __future__ import annotations

import hashlib
import json
from typing import cast

from aws_cdk import CfnCondition, Fn, ICfnConditionExpression, ICfnRuleConditionExpression, Token
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import Config
from infra.logs_stack import retained_log_group
from infra.nag import acknowledge
from infra.nested import ParameterizedNestedStack
from infra.openapi import api_definition
from infra.permissions import log_group_arn

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "error": "$context.error.message",
    }
)


class ApiStack(ParameterizedNestedStack):
    """Inputs: ``Authorization``, ``StageName``, ``ThrottlingRateLimit``, ``ThrottlingBurstLimit``,
    ``ExplorerEnabled`` (yes/no), ``ApiFunctionArn``, ``ExplorerFunctionArn`` (empty when off) and
    ``AccessLogGroupName``."""

    NUMBER_INPUTS = frozenset({"ThrottlingRateLimit", "ThrottlingBurstLimit"})

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Image Similarity: REST API and stage",
            number_inputs=self.NUMBER_INPUTS,
            **kwargs,
        )
        self.config = config
        auth_is_iam = CfnCondition(
            self, "AuthIsIam", expression=Fn.condition_equals(self.input("Authorization"), "AWS_IAM")
        )
        explorer_on = CfnCondition(
            self, "ExplorerOn", expression=Fn.condition_equals(self.input("ExplorerEnabled"), "yes")
        )

        definition = api_definition(
            title=config.api_name,
            api_function_arn=self.input("ApiFunctionArn"),
            explorer_function_arn=self.input("ExplorerFunctionArn"),
            authorization=self.input("Authorization"),
            explorer_condition=explorer_on.logical_id,
            cors_origin=config.cors_origin,
        )
        self.rest_api = apigateway.CfnRestApi(
            self,
            "RestApi",
            name=config.api_name,
            body=definition,
            mode="overwrite",  # removed routes leave the API (the default, merge, would keep them)
            endpoint_configuration=apigateway.CfnRestApi.EndpointConfigurationProperty(types=["REGIONAL"]),
            parameters={"endpointConfigurationTypes": "REGIONAL"},
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG2",
            "every request goes to the runtime, which validates the body itself and answers a 4xx in the "
            "API's error shape naming the field; API Gateway's validator would answer differently",
        )
        self._allow_invoke("ApiFunctionInvoke", self.input("ApiFunctionArn"))
        self._allow_invoke("ExplorerFunctionInvoke", self.input("ExplorerFunctionArn"), condition=explorer_on)

        deployment_id = self._deployments(definition, auth_is_iam, explorer_on)
        self.stage = self._stage(deployment_id)
        self.stage_name = self.stage.ref
        self.url = Fn.sub(
            "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/",
            {"RestApi": self.rest_api.ref, "Stage": self.stage.ref},
        )

    def _allow_invoke(self, construct_id: str, function_arn: str, condition: CfnCondition | None = None) -> None:
        permission = lambda_.CfnPermission(
            self,
            construct_id,
            action="lambda:InvokeFunction",
            function_name=function_arn,
            principal="apigateway.amazonaws.com",
            source_arn=Fn.sub(
                "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApi}/*",
                {"RestApi": self.rest_api.ref},
            ),
        )
        permission.cfn_options.condition = condition

    def _deployments(self, definition: dict, auth_is_iam: CfnCondition, explorer_on: CfnCondition) -> str:
        """One conditional deployment per (authorization, explorer) pair; returns the live one's id."""
        digest = hashlib.sha256(json.dumps(self.resolve(definition), sort_keys=True).encode()).hexdigest()[:8]
        deployments = []
        for iam_on in (True, False):
            for with_explorer in (True, False):
                auth_name = "Iam" if iam_on else "Open"
                explorer_name = "Explorer" if with_explorer else "NoExplorer"
                condition = CfnCondition(
                    self,
                    f"Deploy{auth_name}{explorer_name}",
                    expression=Fn.condition_and(_is(auth_is_iam, iam_on), _is(explorer_on, with_explorer)),
                )
                deployment = apigateway.CfnDeployment(
                    self,
                    f"Deployment{auth_name}{explorer_name}{digest}",
                    rest_api_id=self.rest_api.ref,
                    description=f"authorization {'AWS_IAM' if iam_on else 'NONE'}, explorer "
                    f"{'on' if with_explorer else 'off'}, definition {digest}",
                )
                deployment.cfn_options.condition = condition
                deployments.append((condition, deployment))
        # The conditions cover every case, so the last deployment is the one left when the others are not.
        *others, (_, last) = deployments
        deployment_id: str | ICfnRuleConditionExpression = last.ref
        for condition, deployment in reversed(others):
            deployment_id = Fn.condition_if(condition.logical_id, deployment.ref, deployment_id)
        return Token.as_string(deployment_id)

    def _stage(self, deployment_id: str) -> apigateway.CfnStage:
        # Made before the stage, so API Gateway does not make it first without a retention.
        execution_logs = retained_log_group(
            self,
            "ExecutionLogs",
            self.config.log_retention_days,
            name=Fn.sub(
                "API-Gateway-Execution-Logs_${RestApi}/${StageName}",
                {"RestApi": self.rest_api.ref, "StageName": self.input("StageName")},
            ),
        )
        stage = apigateway.CfnStage(
            self,
            "Stage",
            rest_api_id=self.rest_api.ref,
            stage_name=self.input("StageName"),
            deployment_id=deployment_id,
            description="Image Similarity API",
            access_log_setting=apigateway.CfnStage.AccessLogSettingProperty(
                destination_arn=log_group_arn(self.input("AccessLogGroupName")), format=ACCESS_LOG_FORMAT
            ),
            method_settings=[
                apigateway.CfnStage.MethodSettingProperty(
                    http_method="*",
                    resource_path="/*",
                    throttling_rate_limit=self.input_number("ThrottlingRateLimit"),
                    throttling_burst_limit=self.input_number("ThrottlingBurstLimit"),
                    logging_level="ERROR",
                    data_trace_enabled=False,
                    metrics_enabled=False,
                )
            ],
        )
        stage.node.add_dependency(execution_logs)
        acknowledge(
            stage,
            "AwsSolutions-APIG3",
            "no WAF web ACL by default (it costs a fixed monthly fee per ACL and rules); the stage is "
            "throttled, the runtime caps request size, image size and batch size and refuses "
            "non-public URLs; attach a web ACL to the stage if the API is public",
        )
        return stage


def _is(condition: CfnCondition, expected: bool) -> ICfnConditionExpression:
    expression = cast(ICfnConditionExpression, condition)  # a condition is an expression (jsii types miss it)
    return expression if expected else cast(ICfnConditionExpression, Fn.condition_not(expression))
