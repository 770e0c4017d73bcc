"""API nested stack: the regional REST API, its stage (throttling, access and execution logs) and
the permissions for API Gateway to invoke the functions.

A stage serves a deployment, a snapshot of the API taken when the deployment is made. The API's
shape depends on two parameters (authorization: AWS_IAM, API_KEY or NONE; explorer on/off), so there
is one deployment per combination, each conditional: a parameter update makes the matching one (after the API has been
updated), points the stage at it and removes the old one. Their names also carry a hash of the
definition, so a re-synthesized API is deployed too.

With ``API_KEY`` authorization the stack also makes one API key and a usage plan (rate, burst and a
daily quota) on the stage; its id is the output ``ApiKeyId``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnCondition, CfnOutput, Fn, ICfnConditionExpression, Token
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import Config
from infra.logs_stack import retained_log_group
from infra.nag import acknowledge
from infra.nested import NestedInputs, ParameterizedNestedStack, as_number, expression
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
        "error": "$context.error.messageString",
    }
).replace('"$context.error.messageString"', "$context.error.messageString")
"""One JSON object a request. ``messageString`` is the message already quoted and escaped as a JSON
string, so a message holding a quote keeps the line valid JSON (``message`` would be pasted raw)."""


@dataclass(frozen=True)
class ApiInputs(NestedInputs):
    NUMBERS = frozenset(
        {
            "throttling_rate_limit",
            "throttling_burst_limit",
            "api_key_rate_limit",
            "api_key_burst_limit",
            "api_key_daily_quota",
        }
    )

    authorization: str
    """``AWS_IAM``, ``API_KEY`` or ``NONE``."""
    stage_name: str
    throttling_rate_limit: str
    throttling_burst_limit: str
    explorer_enabled: str
    """``yes`` or ``no``."""
    api_function_arn: str
    explorer_function_arn: str
    """Empty when the explorer is off."""
    access_log_group_name: str
    api_key_rate_limit: str
    api_key_burst_limit: str
    api_key_daily_quota: str


# (name in logical ids, value of the Authorization input)
AUTHORIZATIONS = (("Iam", "AWS_IAM"), ("Key", "API_KEY"), ("Open", "NONE"))
API_KEY_OUTPUT = "ApiKeyId"


class ApiStack(ParameterizedNestedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, inputs: ApiInputs, **kwargs: Any
    ) -> None:
        super().__init__(
            scope, construct_id, description="Image Similarity: REST API and stage", inputs=inputs, **kwargs
        )
        self.config = config
        self.inputs = inputs = self.typed_inputs(ApiInputs)
        auth_is = {
            name: CfnCondition(self, f"AuthIs{name}", expression=Fn.condition_equals(inputs.authorization, value))
            for name, value in AUTHORIZATIONS
            if value != "NONE"
        }
        # "Neither of the others" rather than equals NONE: the conditions then provably cover every value.
        auth_is["Open"] = CfnCondition(
            self,
            "AuthIsOpen",
            expression=Fn.condition_not(Fn.condition_or(*(expression(condition) for condition in auth_is.values()))),
        )
        explorer_on = CfnCondition(self, "ExplorerOn", expression=Fn.condition_equals(inputs.explorer_enabled, "yes"))

        definition = api_definition(
            title=config.api_name,
            api_function_arn=inputs.api_function_arn,
            explorer_function_arn=inputs.explorer_function_arn,
            # API keys ride on NONE: API Gateway checks the key, not a signature.
            authorization=Fn.condition_if(auth_is["Iam"].logical_id, "AWS_IAM", "NONE").to_string(),
            api_key_condition=auth_is["Key"].logical_id,
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
        self._allow_invoke("ApiFunctionInvoke", inputs.api_function_arn)
        self._allow_invoke("ExplorerFunctionInvoke", inputs.explorer_function_arn, condition=explorer_on)

        deployment_id = self._deployments(definition, auth_is, explorer_on)
        self.stage = self._stage(deployment_id)
        self.stage_name = self.stage.ref
        self.url = Fn.sub(
            "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/",
            {"RestApi": self.rest_api.ref, "Stage": self.stage.ref},
        )
        self.stage_arn = Fn.sub(
            "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestApi}/stages/${Stage}",
            {"RestApi": self.rest_api.ref, "Stage": self.stage.ref},
        )
        self._api_key(auth_is["Key"])

    def _api_key(self, condition: CfnCondition) -> None:
        """One key, in a usage plan on this stage: only while the authorization is ``API_KEY``."""
        plan = apigateway.CfnUsagePlan(
            self,
            "UsagePlan",
            description=f"{self.config.api_name}: the stack's API key (ApiAuthorization API_KEY)",
            api_stages=[apigateway.CfnUsagePlan.ApiStageProperty(api_id=self.rest_api.ref, stage=self.stage.ref)],
            throttle=apigateway.CfnUsagePlan.ThrottleSettingsProperty(
                rate_limit=as_number(self.inputs.api_key_rate_limit),
                burst_limit=as_number(self.inputs.api_key_burst_limit),
            ),
            quota=apigateway.CfnUsagePlan.QuotaSettingsProperty(
                limit=as_number(self.inputs.api_key_daily_quota), period="DAY"
            ),
        )
        key = apigateway.CfnApiKey(
            self, "ApiKey", enabled=True, description=f"{self.config.api_name}: made by the stack"
        )
        plan_key = apigateway.CfnUsagePlanKey(
            self, "UsagePlanKey", key_id=key.ref, key_type="API_KEY", usage_plan_id=plan.ref
        )
        for resource in (plan, key, plan_key):
            resource.cfn_options.condition = condition
        CfnOutput(
            self,
            API_KEY_OUTPUT,
            value=key.ref,
            condition=condition,
            description="Id of the stack's API key (ApiAuthorization API_KEY)",
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

    def _deployments(
        self, definition: dict[str, Any], auth_is: dict[str, CfnCondition], explorer_on: CfnCondition
    ) -> str:
        """One conditional deployment per (authorization, explorer) pair; returns the live one's id."""
        digest = hashlib.sha256(json.dumps(self.resolve(definition), sort_keys=True).encode()).hexdigest()[:8]
        deployments = []
        for auth_name, auth_value in AUTHORIZATIONS:
            for with_explorer in (True, False):
                explorer_name = "Explorer" if with_explorer else "NoExplorer"
                condition = CfnCondition(
                    self,
                    f"Deploy{auth_name}{explorer_name}",
                    expression=Fn.condition_and(expression(auth_is[auth_name]), _is(explorer_on, with_explorer)),
                )
                deployment = apigateway.CfnDeployment(
                    self,
                    f"Deployment{auth_name}{explorer_name}{digest}",
                    rest_api_id=self.rest_api.ref,
                    description=f"authorization {auth_value}, explorer "
                    f"{'on' if with_explorer else 'off'}, definition {digest}",
                )
                deployment.cfn_options.condition = condition
                deployments.append((condition, deployment))
        # The conditions cover every case, so the last deployment is the one left when the others are not.
        *others, (_, last) = deployments
        deployment_id: str = last.ref
        for condition, deployment in reversed(others):
            deployment_id = Token.as_string(Fn.condition_if(condition.logical_id, deployment.ref, deployment_id))
        return deployment_id

    def _stage(self, deployment_id: str) -> apigateway.CfnStage:
        # Made before the stage, so API Gateway does not make it first without a retention.
        execution_logs = retained_log_group(
            self,
            "ExecutionLogs",
            self.config.log_retention_days,
            name=Fn.sub(
                "API-Gateway-Execution-Logs_${RestApi}/${StageName}",
                {"RestApi": self.rest_api.ref, "StageName": self.inputs.stage_name},
            ),
        )
        stage = apigateway.CfnStage(
            self,
            "Stage",
            rest_api_id=self.rest_api.ref,
            stage_name=self.inputs.stage_name,
            deployment_id=deployment_id,
            description="Image Similarity API",
            tracing_enabled=True,  # X-Ray: API Gateway's segment, then the function's
            access_log_setting=apigateway.CfnStage.AccessLogSettingProperty(
                destination_arn=log_group_arn(self.inputs.access_log_group_name), format=ACCESS_LOG_FORMAT
            ),
            method_settings=[
                apigateway.CfnStage.MethodSettingProperty(
                    http_method="*",
                    resource_path="/*",
                    throttling_rate_limit=as_number(self.inputs.throttling_rate_limit),
                    throttling_burst_limit=as_number(self.inputs.throttling_burst_limit),
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
            "the WAF web ACL is optional (the Waf parameter, off by default: it costs a fixed monthly fee "
            "per ACL and rule) and lives in a conditional nested stack cdk-nag cannot follow; without it the "
            "stage is throttled, the runtime caps request size, image size and batch size and refuses "
            "non-public URLs",
        )
        return stage


def _is(condition: CfnCondition, expected: bool) -> ICfnConditionExpression:
    return expression(condition) if expected else Fn.condition_not(expression(condition))
