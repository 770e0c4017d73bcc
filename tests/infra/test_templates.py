"""The synthesized templates, for every combination of backend x auth x explorer, and the checks
on them: cdk-nag (AwsSolutions) and cfn-lint.

Each combination is synthesized once per module (a cache; CloudFormation's built-in validation off
for speed); the nag test synthesizes with nag and the built-in validation on.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.builder import build_app
from infra.monitoring_stack import METRICS_NAMESPACE, POWERTOOLS_ENVIRONMENT
from infra.openapi import ROUTES
from tests.infra.cfn_resolver import runtime_environment

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # 14 synths and cfn-lint: minutes on 2 cores

COMBINATIONS = list(itertools.product(("lambda", "sagemaker"), ("AWS_IAM", "API_KEY", "NONE"), (True, False)))
IDS = [f"{backend}-{auth}-{'explorer' if explorer else 'no-explorer'}" for backend, auth, explorer in COMBINATIONS]


@pytest.fixture(scope="module")
def synths() -> dict[tuple, Synth]:
    return {}


@pytest.fixture(params=COMBINATIONS, ids=IDS)
def synth(request, synths, tmp_path_factory) -> Synth:
    backend, auth, explorer = request.param
    if request.param not in synths:
        synths[request.param] = synthesize(
            {"backend": backend, "auth": auth, "explorer": explorer}, tmp_path_factory.mktemp("cdk")
        )
    return synths[request.param]


def test_parameter_defaults_follow_the_flags(synth):
    parameters = synth.root["Parameters"]
    assert parameters["ApiAuthorization"]["Default"] == synth.flags["auth"]
    assert parameters["ApiAuthorization"]["AllowedValues"] == ["AWS_IAM", "API_KEY", "NONE"]
    assert parameters["Waf"] == {**parameters["Waf"], "Default": "no", "AllowedValues": ["yes", "no"]}
    assert "NONE or API_KEY" in parameters["ApiExplorer"]["Description"]
    assert parameters["ApiExplorer"]["Default"] == ("yes" if synth.flags["explorer"] else "no")
    assert parameters["ImageSimilarity"]["Default"] == "yes"
    assert parameters["Libraries"]["Default"] == "yes"
    assert parameters["StageName"]["Default"] == "prod"
    assert (parameters["ThrottlingRateLimit"]["Default"], parameters["ThrottlingBurstLimit"]["Default"]) == (10, 20)
    if synth.flags["backend"] == "lambda":
        assert parameters["LambdaMemorySize"]["Default"] == 4096 and "SageMakerInstanceType" not in parameters
    else:
        assert parameters["SageMakerInstanceType"]["Default"] == "ml.g4dn.xlarge"
        assert "LambdaMemorySize" not in parameters

    interface = synth.root["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [name for group in interface["ParameterGroups"] for name in group["Parameters"]]
    user_parameters = [name for name in parameters if name != "BootstrapVersion"]
    assert sorted(grouped) == sorted(user_parameters)
    assert set(interface["ParameterLabels"]) == set(user_parameters)


def test_nested_stacks_are_conditional_on_the_parameters(synth):
    conditions = synth.root["Conditions"]
    assert conditions["ImageSimilarityOn"] == {"Fn::Equals": [{"Ref": "ImageSimilarity"}, "yes"]}
    assert conditions["ApiExplorerOn"] == {
        "Fn::And": [{"Condition": "ImageSimilarityOn"}, {"Fn::Equals": [{"Ref": "ApiExplorer"}, "yes"]}]
    }
    assert conditions["LibrariesOn"] == {"Fn::Equals": [{"Ref": "Libraries"}, "yes"]}
    assert conditions["WafOn"] == {
        "Fn::And": [{"Condition": "ImageSimilarityOn"}, {"Fn::Equals": [{"Ref": "Waf"}, "yes"]}]
    }
    assert synth.nested_conditions() == {
        "Firewall": "WafOn",
        "Logs": None,
        "Images": None,
        "LibraryStorage": None,  # Libraries=no keeps the data: see test_library_storage
        "Explorer": "ApiExplorerOn",
        "Backend": "ImageSimilarityOn",
        "Api": "ImageSimilarityOn",
        "Monitoring": "ImageSimilarityOn",
        "Imports": "ImportsOn",  # ImageSimilarity and Libraries: see test_imports_stack.py
    }
    # Values from a conditional stack reach another one only through Fn::If on the same condition.
    api_inputs = synth.nested_parameters("Api")
    assert api_inputs["ExplorerFunctionArn"]["Fn::If"][0] == "ApiExplorerOn"
    assert api_inputs["ExplorerEnabled"] == {"Fn::If": ["ApiExplorerOn", "yes", "no"]}
    assert api_inputs["Authorization"] == {"Ref": "ApiAuthorization"}
    backend_inputs = synth.nested_parameters("Backend")
    for name in ("VectorBucketName", "RegistryTableName", "RegistryTableArn"):
        assert backend_inputs[name]["Fn::If"][0] == "LibrariesOn" and backend_inputs[name]["Fn::If"][2] == ""


def test_every_method_carries_the_authorization_parameter(synth):
    api = synth.template("Api")
    body = _only(api, "AWS::ApiGateway::RestApi")["Body"]
    paths = body["paths"]
    assert set(paths) == {route.path for route in ROUTES}
    for route in ROUTES:
        item = paths[route.path]
        if route.explorer:  # present only when the explorer is on
            assert item["Fn::If"][0] == "ExplorerOn" and item["Fn::If"][2] == {"Ref": "AWS::NoValue"}
            item = item["Fn::If"][1]
        assert set(item) - {"parameters"} == {*route.methods, "options"}
        for method in route.methods:
            expected = "NONE" if route.explorer else {"Fn::If": ["AuthIsIam", "AWS_IAM", "NONE"]}
            assert item[method]["x-amazon-apigateway-auth"] == {"type": expected}, (route.path, method)
            key = {"Fn::If": ["AuthIsKey", [{"api_key": []}], {"Ref": "AWS::NoValue"}]}
            assert item[method].get("security") == (None if route.explorer else key), (route.path, method)
            integration = item[method]["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy" and integration["timeoutInMillis"] <= 29_000
            target = "ExplorerFunctionArn" if route.explorer else "ApiFunctionArn"
            assert integration["uri"]["Fn::Sub"][1] == {"FunctionArn": {"Ref": target}}
        assert item["options"]["x-amazon-apigateway-auth"] == {"type": "NONE"}  # CORS preflight
        assert item["options"]["x-amazon-apigateway-integration"]["type"] == "mock"
    assert body["components"]["securitySchemes"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    # The nested Authorization parameter is the root's ApiAuthorization (checked above), whose
    # default follows the flag: every method's authorization follows -c auth.
    assert synth.root["Parameters"]["ApiAuthorization"]["Default"] == synth.flags["auth"]


def test_rest_api_stage_throttling_and_logs(synth):
    api = synth.template("Api")
    api.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"Mode": "overwrite", "EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )
    api.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": {"Ref": "StageName"},
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
            "MethodSettings": [
                {
                    "HttpMethod": "*",
                    "ResourcePath": "/*",
                    "LoggingLevel": "ERROR",
                    "DataTraceEnabled": False,
                    "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
                    "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
                }
            ],
        },
    )
    api_inputs = synth.nested_parameters("Api")
    assert api_inputs["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert api_inputs["StageName"] == {"Ref": "StageName"}
    body = _only(api, "AWS::ApiGateway::RestApi")["Body"]
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX", "REQUEST_TOO_LARGE"}
    too_large = json.loads(responses["REQUEST_TOO_LARGE"]["responseTemplates"]["application/json"])
    assert too_large["code"] == "payload_too_large"  # the runtime's code for the same refusal
    assert "10 MB" in too_large["message"]
    # A 6-10 MB body passes API Gateway but not Lambda's 6 MB synchronous payload: API Gateway's own
    # 5xx answer must still have the API's error shape.
    server_error = responses["DEFAULT_5XX"]["responseTemplates"]["application/json"]
    assert '"message"' in server_error and '"code"' in server_error
    # JSON must reach Lambda as text: base64 wrapping would make the 6 MB limit bite at about 4.5 MB
    # of JSON. Only the upload types are binary (tests/infra/test_binary_media.py).
    rest_api = _only(api, "AWS::ApiGateway::RestApi")
    assert "BinaryMediaTypes" not in rest_api
    uploads = ["image/*", "application/octet-stream", "multipart/form-data"]
    assert body["x-amazon-apigateway-binary-media-types"] == uploads


def test_a_deployment_per_authorization_and_explorer_setting(synth):
    """A parameter update must redeploy the stage; each combination has its own deployment."""
    resources = synth.nested["Api"]["Resources"]
    deployments = {name: body for name, body in resources.items() if body["Type"] == "AWS::ApiGateway::Deployment"}
    assert sorted(body["Condition"] for body in deployments.values()) == [
        "DeployIamExplorer",
        "DeployIamNoExplorer",
        "DeployKeyExplorer",
        "DeployKeyNoExplorer",
        "DeployOpenExplorer",
        "DeployOpenNoExplorer",
    ]
    stage = next(body for body in resources.values() if body["Type"] == "AWS::ApiGateway::Stage")
    referenced = set(_refs(stage["Properties"]["DeploymentId"]))
    assert referenced == set(deployments)


def test_log_retention_everywhere(synth):
    groups = [
        body
        for template in synth.all_templates()
        for body in template["Resources"].values()
        if body["Type"] == "AWS::Logs::LogGroup"
    ]
    assert len(groups) >= 4
    assert all(body["Properties"]["RetentionInDays"] == 30 for body in groups)
    for template in synth.all_templates():
        for body in template["Resources"].values():
            if body["Type"] == "AWS::Lambda::Function":
                assert body["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": "LogGroupName"}
    # Each function writes to a log group made (with a retention) by the logs stack.
    logs_outputs = {output for output in synth.nested["Logs"].get("Outputs", {})}
    for stack in ("Backend", "Explorer"):
        log_input = synth.nested_parameters(stack)["LogGroupName"]
        assert log_input["Fn::GetAtt"][1].removeprefix("Outputs.") in logs_outputs
    if synth.flags["backend"] == "sagemaker":
        Template.from_json(synth.nested["Logs"]).has_resource_properties(
            "AWS::Logs::LogGroup",
            {"LogGroupName": {"Fn::Join": ["", ["/aws/sagemaker/Endpoints/", {"Ref": "EndpointName"}]]}},
        )


def test_image_assets_are_the_ones_the_backend_needs(synth):
    images = synth.docker_images()
    if synth.flags["backend"] == "lambda":
        assert sorted(images) == ["front", "model"]
    else:
        assert sorted(images) == ["front", "sagemaker"]
    for role, source in images.items():
        assert source["directory"].startswith("asset.")
        context = synth.outdir / source["directory"]
        staged = sorted(path.name for path in context.iterdir())
        assert staged == [".dockerignore", "lambda_image", "runtime", "sagemaker_image"]  # no cdk.out, .venv, tests
        assert not list(context.rglob("__pycache__"))
        if role != "front":
            assert source["dockerBuildArgs"] == {"MODEL": "ViT-B-32", "PRETRAINED": "laion2b_s34b_b79k"}
    assert images["front"]["dockerBuildTarget"] == "front"
    assert images["front"]["dockerFile"] == "lambda_image/Dockerfile"
    if "model" in images:
        assert images["model"]["dockerBuildTarget"] == "model"
    if "sagemaker" in images:
        assert images["sagemaker"]["dockerFile"] == "sagemaker_image/Dockerfile"
    Template.from_json(synth.nested["Images"]).resource_count_is("AWS::SSM::Parameter", len(images))


def test_api_function(synth):
    function = _only(synth.template("Backend"), "AWS::Lambda::Function")
    environment = function["Environment"]["Variables"]
    assert environment["IMSIM_AUTH"] == {"Ref": "Authorization"}
    assert environment["IMSIM_VECTOR_BUCKET"] == {"Ref": "VectorBucketName"}
    assert environment["IMSIM_REGISTRY_TABLE"] == {"Ref": "RegistryTableName"}
    assert environment["IMSIM_STORE"] == {"Fn::If": ["HasLibraries", "s3vectors", "off"]}
    assert environment["IMSIM_S3_ALLOWED_BUCKETS"] == ""
    assert (environment["IMSIM_MODEL"], environment["IMSIM_PRETRAINED"]) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert environment["IMSIM_IMAGE_SIZE"] == "224"
    assert environment["IMSIM_CORS_ORIGIN"] == "*"
    # The SSRF guard cannot be loosened from the template: no deployed function names extra
    # networks or ports for URL inputs.
    assert not {"IMSIM_FETCH_ALLOW_NETWORKS", "IMSIM_FETCH_PORTS"} & set(environment)
    assert function["Timeout"] < 29  # API Gateway's integration limit
    assert "ImageConfig" not in function  # the image's own CMD: handler.handler
    image_tag = function["Code"]["ImageUri"]["Fn::Join"][1][-1].lstrip(":")
    if synth.flags["backend"] == "lambda":
        assert environment["IMSIM_ENGINE"] == "onnx"
        assert function["MemorySize"] == {"Ref": "MemorySize"}
        assert synth.nested_parameters("Backend")["MemorySize"] == {"Ref": "LambdaMemorySize"}
        assert image_tag == synth.docker_images()["model"]["tag"]
    else:
        assert environment["IMSIM_ENGINE"] == "sagemaker"
        endpoint = environment["IMSIM_SAGEMAKER_ENDPOINT"]["Fn::GetAtt"]
        assert endpoint[0].startswith("EmbedderEndpoint") and endpoint[1] == "EndpointName"
        assert image_tag == synth.docker_images()["front"]["tag"]


def test_every_imsim_variable_the_templates_write_is_a_runtime_setting(synth):
    from runtime.contract import DEPLOYED_SETTINGS
    from runtime.settings import Settings

    written = {
        name: value
        for template in synth.all_templates()
        for body in template["Resources"].values()
        if body["Type"] == "AWS::Lambda::Function"
        for name, value in body["Properties"].get("Environment", {}).get("Variables", {}).items()
        if name.startswith("IMSIM_")
    }
    assert {"IMSIM_AUTH", "IMSIM_ENGINE", "IMSIM_STORE"} <= set(written)
    assert {name.removeprefix("IMSIM_").lower() for name in written} <= set(DEPLOYED_SETTINGS)
    # Each function's values (those known at synth, placeholders for the rest) are ones the runtime accepts.
    for template in synth.all_templates():
        for body in template["Resources"].values():
            if body["Type"] == "AWS::Lambda::Function":
                variables = body["Properties"].get("Environment", {}).get("Variables", {})
                Settings.from_env(runtime_environment({k: v for k, v in variables.items() if k.startswith("IMSIM_")}))


def test_settings_environment_refuses_a_name_that_is_not_a_setting():
    from infra.environment import settings_environment

    assert settings_environment(store="off") == {"IMSIM_STORE": "off"}
    with pytest.raises(ValueError, match="not runtime settings: vector_buckets"):
        settings_environment(vector_buckets="x")


def test_explorer_function(synth):
    function = _only(synth.template("Explorer"), "AWS::Lambda::Function")
    assert function["ImageConfig"] == {"Command": ["explorer_handler.handler"]}
    assert function["Environment"]["Variables"] == {"IMSIM_AUTH": {"Ref": "Authorization"}, **POWERTOOLS_ENVIRONMENT}
    assert function["Code"]["ImageUri"]["Fn::Join"][1][-1].lstrip(":") == synth.docker_images()["front"]["tag"]


def test_iam_is_scoped_to_this_stacks_resources(synth):
    statements = synth.policy_statements()
    xray = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]  # no resource-level permissions
    # Step Functions' log delivery and X-Ray calls take no resource (IAM accepts only "*"): test_imports_stack.py
    wildcard = [
        (stack, s)
        for stack, s in statements
        if "*" in _as_list(s["Resource"]) and s["Action"] != xray and s.get("Sid") not in IMPORT_WILDCARDS
    ]
    if synth.flags["backend"] == "sagemaker":  # IAM only accepts "*" for these
        assert [s["Action"] for _, s in wildcard] == ["ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"]
    else:
        assert wildcard == []
    # no buckets listed (the imports stack reads its own results bucket: test_imports_stack.py)
    assert not any("s3:GetObject" in _as_list(s["Action"]) for stack, s in statements if stack != "Imports")

    backend = synth.nested["Backend"]["Resources"]
    library = next(
        body
        for name, body in backend.items()
        if body["Type"] == "AWS::IAM::Policy" and name.startswith("LibraryAccess")
    )
    assert library["Condition"] == "HasLibraries"
    vectors, registry = library["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(vectors["Action"]) == store_actions("s3vectors", "s3vectors.py")
    bucket_arn = [
        "arn:",
        {"Ref": "AWS::Partition"},
        ":s3vectors:",
        {"Ref": "AWS::Region"},
        ":",
        {"Ref": "AWS::AccountId"},
        ":bucket/",
        {"Ref": "VectorBucketName"},
    ]
    assert vectors["Resource"] == {"Fn::Join": ["", [*bucket_arn, "/index/*"]]}
    assert sorted(registry["Action"]) == store_actions("dynamodb", "registry.py")
    assert registry["Resource"] == {"Ref": "RegistryTableArn"}

    if synth.flags["backend"] == "sagemaker":
        # The API function and the import worker, both by the endpoint's own (lower-case) ARN: its Ref.
        invoke = [s for stack, s in statements if s["Action"] == "sagemaker:InvokeEndpoint"]
        assert len(invoke) == 2 and all(s["Resource"]["Ref"].startswith("EmbedderEndpoint") for s in invoke)


IMPORT_WILDCARDS = ("StateMachineLogDelivery", "StateMachineTracing")


def store_actions(service: str, module: str) -> list[str]:
    """The API operations a library store module calls (``_call("Op"`` / ``_pages("Op"``), as IAM actions:
    derived from the code so that granting more, or less, than it calls fails the test."""
    source = (ROOT / "runtime" / "libraries" / "aws" / module).read_text()
    operations = set(re.findall(r"_(?:call|pages)\(\s*\"([A-Za-z]+)\"", source))
    assert operations, f"found no calls in {module}"
    return sorted(f"{service}:{operation}" for operation in operations)


def test_store_actions_are_read_from_the_code():
    assert store_actions("s3vectors", "s3vectors.py") == [
        f"s3vectors:{op}"
        for op in (
            "CreateIndex",
            "DeleteIndex",
            "DeleteVectors",
            "GetVectors",
            "ListVectors",
            "PutVectors",
            "QueryVectors",
            "UpdateIndexMode",
        )
    ]
    assert store_actions("dynamodb", "registry.py") == [
        f"dynamodb:{op}" for op in ("DeleteItem", "GetItem", "PutItem", "Scan", "UpdateItem")
    ]


def test_library_storage(synth):
    """Not conditional (test_nested_stacks_are_conditional_on_the_parameters): the libraries, their
    registry and the import results survive any parameter update, and a flip back finds them."""
    storage = synth.template("LibraryStorage")
    storage.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain",
            "Properties": {"LifecycleConfiguration": {"Rules": [{"ExpirationInDays": 30, "Status": "Enabled"}]}},
        },
    )
    storage.has_resource("AWS::S3Vectors::VectorBucket", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"})
    storage.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": {
                "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "name", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
    )


def test_sagemaker_endpoint_and_autoscaling(synth):
    if synth.flags["backend"] != "sagemaker":
        assert not any(t.startswith("AWS::SageMaker::") for t in synth.resource_types())
        return
    backend = synth.template("Backend")
    assert synth.nested_parameters("Backend")["InstanceType"] == {"Ref": "SageMakerInstanceType"}
    backend.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {"InstanceType": {"Ref": "InstanceType"}, "VariantName": "AllTraffic", "InitialInstanceCount": 1}
                )
            ]
        },
    )
    backend.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": {"Ref": "EndpointName"}})
    backend.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1,
            "MaxCapacity": 2,
        },
    )
    backend.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "TargetValue": 600,
                }
            ),
        },
    )
    # The endpoint's name follows the instance type (a new type makes a new endpoint).
    name = synth.nested_parameters("Backend")["EndpointName"]
    assert name == {
        "Fn::Join": [
            "-",
            ["ImageSimilarity", {"Fn::Join": ["-", {"Fn::Split": [".", {"Ref": "SageMakerInstanceType"}]}]}],
        ]
    }
    assert synth.nested_parameters("Logs")["EndpointName"] == name


def test_monitoring(synth):
    monitoring = synth.template("Monitoring")
    monitoring.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    api = [{"Name": "ApiName", "Value": "ImageSimilarity-api"}, {"Name": "Stage", "Value": {"Ref": "StageName"}}]
    for metric, statistic, threshold in (("5XXError", "Average", 0.05), ("Latency", "p99", 5000)):
        monitoring.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Threshold": threshold,
                "Metrics": [
                    Match.object_like(
                        {
                            "MetricStat": {
                                "Metric": {"Dimensions": api, "MetricName": metric, "Namespace": "AWS/ApiGateway"},
                                "Period": 300,
                                "Stat": statistic,
                            }
                        }
                    )
                ],
            },
        )
    assert synth.nested_parameters("Monitoring")["StageName"]["Fn::GetAtt"][0].startswith("ApiNestedStack")
    dashboard = json.dumps(_only(monitoring, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    for metric in ("Count", "Latency", "4XXError", "5XXError", "Duration", "Throttles"):
        assert f'\\"{metric}\\"' in dashboard, metric
    assert ("ModelLatency" in dashboard) == (synth.flags["backend"] == "sagemaker")
    # The runtime's EMF metrics (tests/containers/test_observability.py checks that the handlers write them).
    for metric in ("ImagesEmbedded", "TextsEmbedded", "BatchSize", "ExactDuplicatesRefused", "ImportedImages"):
        assert f'\\"{metric}\\"' in dashboard, metric
    for search in ("{ImageSimilarity,route,service} MetricName=", "{ImageSimilarity,outcome,route,service}"):
        assert search in dashboard.replace('\\"', '"'), search
    alarms = monitoring.find_resources("AWS::CloudWatch::Alarm")
    url_alarm = next(body["Properties"] for name, body in alarms.items() if name.startswith("UrlFailureRateAlarm"))
    expression, failures, requests = url_alarm["Metrics"]
    assert expression["Expression"] == "IF(requests >= 20, failures / requests, 0)" and url_alarm["Threshold"] == 0.25
    for query, name in ((failures, "UrlFailures"), (requests, "Requests")):
        stat = query["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": METRICS_NAMESPACE,
            "MetricName": name,
            "Dimensions": [{"Name": "service", "Value": "image-similarity"}],
        }
        assert stat["Stat"] == "Sum" and query["ReturnData"] is False


def test_active_tracing_and_powertools_settings_on_every_function_and_the_stage(synth):
    functions = [("Backend", _only(synth.template("Backend"), "AWS::Lambda::Function"))]
    functions.append(("Explorer", _only(synth.template("Explorer"), "AWS::Lambda::Function")))
    functions.append(("Imports", _only(synth.template("Imports"), "AWS::Lambda::Function")))  # the import worker
    for _, function in functions:
        assert function["TracingConfig"] == {"Mode": "Active"}
        variables = function["Environment"]["Variables"]
        assert {k: variables[k] for k in POWERTOOLS_ENVIRONMENT} == POWERTOOLS_ENVIRONMENT
    xray_actions = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    xray = [s for _, s in synth.policy_statements() if s["Action"] == xray_actions]
    assert len(xray) == len(functions) and all(s["Resource"] == "*" for s in xray)
    assert _only(synth.template("Api"), "AWS::ApiGateway::Stage")["TracingEnabled"] is True


def test_outputs(synth):
    outputs = synth.root["Outputs"]
    assert outputs["BackendInUse"]["Value"] == synth.flags["backend"]
    assert outputs["ApiUrl"]["Condition"] == "ImageSimilarityOn"
    assert outputs["ApiExplorerUrl"]["Condition"] == "ApiExplorerOn"
    assert outputs["DashboardUrl"]["Condition"] == "ImageSimilarityOn"
    assert outputs["VectorBucketName"]["Condition"] == "LibrariesOn"
    assert outputs["ApiKeyId"]["Condition"] == "ApiKeyOn" and "get-api-key" in outputs["ApiKeyId"]["Description"]
    assert outputs["WebAclArn"]["Condition"] == "WafOn"
    assert all(len(output.get("Description", "")) > 20 for output in outputs.values()), outputs
    assert synth.root["Description"].startswith("Image Similarity API v0.")
    assert "${AWS::URLSuffix}" in outputs["ApiUrl"]["Value"]["Fn::Sub"][0]


def test_partition_agnostic(synth):
    for template in synth.all_templates():
        text = json.dumps(template)
        assert "arn:aws:" not in text
        for path, value in _strings(template):
            if "amazonaws.com" in value:  # only service principals, which are the same in every partition
                assert path[-1] in ("Service", "Principal"), (path, value)


def test_auth_and_explorer_flags_only_change_parameter_defaults(synth, synths, tmp_path_factory):
    """So the nag and cfn-lint runs on one combination per backend cover the other three."""
    backend = synth.flags["backend"]
    reference_key = (backend, "AWS_IAM", True)
    if reference_key not in synths:
        synths[reference_key] = synthesize({"backend": backend}, tmp_path_factory.mktemp("cdk"))
    reference = synths[reference_key]
    for name, template in synth.templates_by_name().items():
        other = reference.templates_by_name()[name]
        assert _without_defaults(template) == _without_defaults(other), name


# --- synthesis ---------------------------------------------------------------------------------


@dataclass
class Synth:
    """One synthesized app: the root template, the nested ones by construct id, the assets."""

    flags: dict[str, Any]
    outdir: Path

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.outdir / "ImageSimilarity.assets.json").read_text())

    @cached_property
    def root(self) -> dict:
        return json.loads((self.outdir / "ImageSimilarity.template.json").read_text())

    @cached_property
    def nested_resources(self) -> dict[str, dict]:
        """Construct id (``Api``) -> its AWS::CloudFormation::Stack resource in the root."""
        return {
            name.split("NestedStack")[0]: body
            for name, body in self.root["Resources"].items()
            if body["Type"] == "AWS::CloudFormation::Stack"
        }

    @cached_property
    def nested(self) -> dict[str, dict]:
        files = {key: body["source"]["path"] for key, body in self.manifest["files"].items()}
        templates = {}
        for name, body in self.nested_resources.items():
            url = json.dumps(body["Properties"]["TemplateURL"])
            key = next(key for key in files if key in url)
            templates[name] = json.loads((self.outdir / files[key]).read_text())
        return templates

    def template(self, name: str) -> Template:
        return Template.from_json(self.nested[name])

    def nested_conditions(self) -> dict[str, str | None]:
        return {name: body.get("Condition") for name, body in self.nested_resources.items()}

    def nested_parameters(self, name: str) -> dict[str, Any]:
        return self.nested_resources[name]["Properties"].get("Parameters", {})

    def templates_by_name(self) -> dict[str, dict]:
        return {"root": self.root, **self.nested}

    def all_templates(self) -> list[dict]:
        return list(self.templates_by_name().values())

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    def resource_types(self) -> set[str]:
        return {body["Type"] for template in self.all_templates() for body in template["Resources"].values()}

    def docker_images(self) -> dict[str, dict]:
        """Role (``model``, ``front``, ``sagemaker``) -> its build source and image tag."""
        images = {}
        for body in self.manifest["dockerImages"].values():
            role = body["displayName"].split()[1]
            tag = next(iter(body["destinations"].values()))["imageTag"]
            images[role] = {**body["source"], "tag": tag}
        return images

    def policy_statements(self) -> list[tuple[str, dict]]:
        statements = []
        for name, template in self.templates_by_name().items():
            for body in template["Resources"].values():
                if body["Type"] == "AWS::IAM::Policy":
                    statements += [(name, s) for s in body["Properties"]["PolicyDocument"]["Statement"]]
        return statements


def synthesize(flags: dict[str, Any], outdir: Path, *, nag: bool = False, validation: bool = False) -> Synth:
    build_app(flags, nag=nag, validation=validation, outdir=str(outdir)).synth()
    return Synth(flags={"auth": "AWS_IAM", "explorer": True, **flags}, outdir=outdir)


# --- helpers ---------------------------------------------------------------------------------


def _only(template: Template, resource_type: str) -> dict[str, Any]:
    found = template.find_resources(resource_type)
    assert len(found) == 1, (resource_type, list(found))
    return next(iter(found.values()))["Properties"]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        if "Ref" in value:
            return [value["Ref"]]
        return [ref for inner in value.values() for ref in _refs(inner)]
    if isinstance(value, list):
        return [ref for inner in value for ref in _refs(inner)]
    return []


def _strings(value: Any, path: tuple = ()):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, (*path, key))
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner, path)
    elif isinstance(value, str):
        yield path, value


def _without_defaults(template: dict) -> dict:
    template = json.loads(json.dumps(template))
    for parameter in template.get("Parameters", {}).values():
        parameter.pop("Default", None)
    return template


# --- flags beyond backend x auth x explorer, and the checks --------------------------------------

NAG_FLAGS = [
    {
        "backend": "lambda",
        "s3_read_buckets": "images-in,more.images",
        "provisioned_concurrency": 2,
        "reserved_concurrency": 4,
        "libraries": False,
        "image_similarity": False,
        "api_gateway_logging_role": False,
        "stage": "v1",
        "throttle_rate": 50,
        "throttle_burst": 100,
        "lambda_memory": 10240,
        "log_retention_days": 90,
        "model": "ViT-B-32-SigLIP2-256/webli",  # a non-default model: nag and cfn-lint cover it too
    },
    {
        "backend": "sagemaker",
        "auth": "NONE",
        "explorer": False,
        "s3_read_buckets": "images-in",
        "sagemaker_instance_type": "ml.g5.2xlarge",
        "sagemaker_max_instances": 4,
        "waf": True,
        "model": "MobileCLIP2-S0/dfndr2b",
    },
]


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> list[Synth]:
    """Synthesized with cdk-nag and CloudFormation's validation on: synth raises on any unacknowledged
    nag error. One app per backend; auth and explorer only change parameter defaults (tested above)."""
    return [synthesize(flags, tmp_path_factory.mktemp("nag"), nag=True, validation=True) for flags in NAG_FLAGS]


# S1: the imports' results bucket has no access-log bucket (see infra/imports_stack.py for the reason).
ACKNOWLEDGED_RULES = {
    "AwsSolutions-APIG2",
    "AwsSolutions-APIG3",
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-S1",
}


def test_cdk_nag_passes_and_every_acknowledgement_has_a_reason(checked):
    for synth in checked:
        report = json.loads((synth.outdir / "validation-report.json").read_text())
        nag = next(r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions")
        assert nag["conclusion"] == "success"
        assert not [v for v in nag["violations"] if v["severity"] == "error"]
        acknowledged = nag["suppressedViolations"]
        assert all(len(v["reason"]) > 60 for v in acknowledged)
        assert {v["ruleName"].split("[")[0] for v in acknowledged} <= ACKNOWLEDGED_RULES
        # Wildcards are acknowledged one by one, never for a whole role.
        assert all("[" in v["acknowledgedId"] for v in acknowledged if "IAM5" in v["ruleName"])


@pytest.mark.slow
def test_cdk_nag_fails_synth_on_an_unacknowledged_wildcard(tmp_path):
    from aws_cdk import aws_iam as iam

    app = build_app({"backend": "lambda"}, outdir=str(tmp_path), validation=False)
    backend = app.node.find_child("ImageSimilarity").backend
    # Every bucket's objects: a wildcard no acknowledgement covers (the role's one acknowledged wildcard is
    # X-Ray's Resource::*, which has no resource-level permissions).
    backend.api.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::*/*"]))
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-IAM5\[Resource::arn:aws:s3:::\*/\*\]"):
        app.synth()


def test_flags_set_defaults_and_grants(checked):
    synth = checked[0]
    parameters = synth.root["Parameters"]
    assert (parameters["ImageSimilarity"]["Default"], parameters["Libraries"]["Default"]) == ("no", "no")
    assert (parameters["StageName"]["Default"], parameters["LambdaMemorySize"]["Default"]) == ("v1", 10240)
    assert (parameters["ThrottlingRateLimit"]["Default"], parameters["ThrottlingBurstLimit"]["Default"]) == (50, 100)
    backend = synth.template("Backend")
    backend.has_resource_properties(
        "AWS::Lambda::Alias", {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}}
    )
    backend.has_resource_properties(
        "AWS::Lambda::Version",
        {"Description": {"Fn::Sub": ["memory ${MemorySize} MB", {"MemorySize": {"Ref": "MemorySize"}}]}},
    )  # new memory, new version
    backend.has_resource_properties("AWS::Lambda::Function", {"ReservedConcurrentExecutions": 4})
    assert "Live" in synth.nested_parameters("Api")["ApiFunctionArn"]["Fn::GetAtt"][1]  # API invokes the alias
    reads = [s for _, s in synth.policy_statements() if s["Action"] == "s3:GetObject"]
    assert [r["Fn::Join"][1][-1] for r in reads[0]["Resource"]] == [":s3:::images-in/*", ":s3:::more.images/*"]
    function = _only(backend, "AWS::Lambda::Function")
    assert function["Environment"]["Variables"]["IMSIM_S3_ALLOWED_BUCKETS"] == "images-in,more.images"
    assert "AWS::ApiGateway::Account" not in synth.resource_types()
    assert {
        body["Properties"]["RetentionInDays"]
        for t in synth.all_templates()
        for body in t["Resources"].values()
        if body["Type"] == "AWS::Logs::LogGroup"
    } == {90}

    sagemaker = checked[1]
    assert sagemaker.root["Parameters"]["SageMakerInstanceType"]["Default"] == "ml.g5.2xlarge"
    assert sagemaker.root["Parameters"]["Waf"]["Default"] == "yes"
    sagemaker.template("Backend").has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 1, "MaxCapacity": 4}
    )
    assert "AWS::ApiGateway::Account" in sagemaker.resource_types()


def test_cfn_lint_reports_nothing_on_any_template(checked, synths, tmp_path_factory, tmp_path):
    for backend, auth, explorer in COMBINATIONS:  # when this test runs alone
        if (backend, auth, explorer) not in synths:
            synths[(backend, auth, explorer)] = synthesize(
                {"backend": backend, "auth": auth, "explorer": explorer}, tmp_path_factory.mktemp("cdk")
            )
    unique: dict[str, Path] = {}
    for synth in [*synths.values(), *checked]:
        for path in synth.template_files():
            unique.setdefault(path.read_text(), path)
    files = []
    for number, path in enumerate(unique.values()):  # distinct names, so a finding names its template
        files.append(tmp_path / f"{number:02d}-{path.name}")
        files[-1].write_text(path.read_text())
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--regions", "us-east-1", "cn-northwest-1", "--", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(files) >= 14


@pytest.mark.slow
def test_api_gateway_routes_every_path_the_runtime_serves():
    from runtime.api.app import create_app
    from runtime.api.routes.explorer import route_document
    from runtime.settings import Settings

    app = create_app(Settings(explorer=True, store="off"), serve_model=False)
    routed = {(route.path, method) for route in ROUTES for method in route.methods}
    for path, operations in route_document(app)["paths"].items():
        for method in operations:
            proxied = path.startswith("/api-explorer/") and ("/api-explorer/{proxy+}", method) in routed
            assert (path, method) in routed or proxied, (path, method)


def test_the_deployed_api_has_every_route_the_app_serves():
    """A route added to the app but not to infra/openapi.py's ROUTES would be a 403 from API Gateway."""
    from runtime.api.app import create_app, leaf_routes
    from runtime.settings import Settings

    app = create_app(Settings(), serve_model=False)
    served = {
        (method.lower(), route.path) for route in leaf_routes(app.router.routes) for method in route.methods or ()
    }
    assert ("post", "/image-similarity") in served
    deployed = {(method, route.path) for route in ROUTES for method in route.methods}
    proxied = ("/api-explorer/", "/libraries-ui/")  # the explorer function's {proxy+} paths
    assert {(method, path) for method, path in served if not path.startswith(proxied)} <= deployed
