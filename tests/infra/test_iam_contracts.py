"""Every IAM statement of every synthesized template, checked against AWS's IAM service authorization
data as policy_sentry ships it (its database is from 2026): no unknown action, no malformed resource
ARN, no resource that none of the statement's actions applies to, and "*" only where an action
takes no resource.

Where the database does not know an action yet (it lags the services: S3 Vectors' UpdateIndexMode
came later), the action is checked against the operations of botocore's model for that service
instead, and the test says which ones it had to check that way.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import botocore.session
import pytest
from policy_sentry.querying.actions import get_action_data, get_actions_for_service
from policy_sentry.querying.all import get_all_service_prefixes

from tests.infra.test_templates import synthesize

pytestmark = pytest.mark.slow  # two synths

FLAGS = [
    {"backend": "lambda", "s3_read_buckets": "images-in,more.images"},
    {"backend": "sagemaker", "s3_read_buckets": "images-in", "waf": True},
]
BOTOCORE_SERVICE = {"states": "stepfunctions", "sagemaker": "sagemaker-runtime"}
"""IAM prefix -> botocore service, where the names differ (InvokeEndpoint is SageMaker Runtime's)."""
ONLY_IN_BOTOCORE = {"s3vectors:UpdateIndexMode"}
"""Actions policy_sentry's database does not list yet, found in botocore's model instead."""
DOCUMENTED_BEYOND_THE_DATABASE = {
    ("states:DescribeExecution", "execution:ImageSimilarity-imports/*"),
    ("states:StopExecution", "execution:ImageSimilarity-imports/*"),
}
"""A Distributed Map's child executions are named ``execution:<machine>/<map run>:<child>``; AWS's
Distributed Map IAM example grants exactly this, while the authorization data lists DescribeExecution
and StopExecution on ``execution:<machine>:<id>`` only (granted as well)."""

SAMPLES = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "ImageSimilarity",
}
PARAMETER_SAMPLES = {
    "VectorBucketName": "image-similarity-vectors",
    "RegistryTableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/ImageSimilarity-Registry",
    "ResultsBucketName": "image-similarity-import-results",
    "LogGroupName": "/aws/lambda/ImageSimilarity-api",
    "StateMachineLogGroupName": "/aws/vendedlogs/states/ImageSimilarity-imports",
    "ImportWorkerRoleName": "ImageSimilarity-ImportWorkerRole",
    "EndpointName": "ImageSimilarity-ml-g4dn-xlarge",
}
ARN_SAMPLES = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:us-east-1:123456789012:table/ImageSimilarity-Jobs",
    "AWS::Lambda::Function": "arn:aws:lambda:us-east-1:123456789012:function:ImageSimilarity-Worker",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:ImageSimilarity-imports",
    "AWS::SageMaker::Endpoint": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/imagesimilarity-ml-g4dn-xlarge",
    "AWS::Logs::LogGroup": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/ImageSimilarity:*",
}
REF_IS_ARN = {"AWS::SageMaker::Endpoint", "AWS::StepFunctions::StateMachine"}
NAME_PLACEHOLDERS = {"ObjectName": ".+", "LogGroupName": "[^:]+", "LogStreamName": "[^:]+"}
"""Placeholders whose values hold '/'; every other one is one ARN segment ``[^:/]+``."""


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> list[tuple[str, dict, dict]]:
    """(stack name, template, its flags) of both backends' synthesized apps."""
    found = []
    for flags in FLAGS:
        synth = synthesize(flags, tmp_path_factory.mktemp("iam"))
        found += [
            (f"{flags['backend']}/{name}", template, flags) for name, template in synth.templates_by_name().items()
        ]
    return found


def identity_statements(template: dict) -> list[dict]:
    """The statements of the identity policies (not bucket or key policies, not trust policies)."""
    found = []
    for body in template["Resources"].values():
        properties = body.get("Properties", {})
        if body["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found += properties["PolicyDocument"]["Statement"]
        elif body["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                found += policy["PolicyDocument"]["Statement"]
    return found


def resolved(value: Any, template: dict) -> list[str]:
    """A resource as the ARNs it can be (both sides of an Fn::If), with tokens made sample values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [arn for item in value for arn in resolved(item, template)]
    (function, argument), *_ = value.items()
    if function == "Fn::If":
        return [
            arn for branch in argument[1:] if branch != {"Ref": "AWS::NoValue"} for arn in resolved(branch, template)
        ]
    if function == "Fn::Join":
        separator, parts = argument
        texts = [resolved(part, template) for part in parts]
        assert all(len(text) == 1 for text in texts), value
        return [separator.join(text[0] for text in texts)]
    if function == "Ref":
        return [sample_of_ref(argument, template)]
    if function == "Fn::Sub" and isinstance(argument, str):  # pseudo parameters only (CDK's asset names)
        return [re.sub(r"\$\{([^}]+)\}", lambda found: SAMPLES[found[1]], argument)]
    if function == "Fn::GetAtt":
        resource_type = template["Resources"][argument[0]]["Type"]
        assert argument[1] == "Arn", value
        return [ARN_SAMPLES[resource_type]]
    raise AssertionError(f"no sample for {value}")


def sample_of_ref(name: str, template: dict) -> str:
    if name in SAMPLES:
        return SAMPLES[name]
    if name in template.get("Parameters", {}):
        return PARAMETER_SAMPLES[name]
    resource_type = template["Resources"][name]["Type"]
    assert resource_type in REF_IS_ARN, f"Ref of a {resource_type} is not an ARN"
    return ARN_SAMPLES[resource_type]


@cache
def action_formats(action: str) -> tuple[str, ...] | None:
    """The ARN formats the action applies to ('*' when it takes none), or None if the data lacks it."""
    service, name = action.split(":")
    rows = get_action_data(service, name).get(service, [])
    return tuple(row["resource_arn_format"] for row in rows) or None


def format_pattern(arn_format: str) -> re.Pattern[str]:
    pattern = re.escape(arn_format)
    for placeholder in re.findall(r"\\\$\\\{(\w+)\\\}", pattern):
        value = NAME_PLACEHOLDERS.get(placeholder, "[^:/]+")
        pattern = pattern.replace(rf"\$\{{{placeholder}\}}", value, 1)
    return re.compile(pattern)


def applies(arn: str, arn_format: str) -> bool:
    """Whether the policy's ARN (its '*' a wildcard, as IAM reads it) can name a resource of that format."""
    if arn == "*" or arn_format == "*":
        return arn == arn_format
    pattern = format_pattern(arn_format)
    # What a '*' can stand for: a segment or two, or any tail of a resource of this format
    # (``log-group:NAME:*`` names ``log-group:NAME:log-stream:STREAM``).
    sample = re.sub(r"\$\{\w+\}", "x", arn_format)
    tails = {sample[i + 1 :] for i, char in enumerate(sample) if char in ":/"}
    fillings = {"x", "x:x", "x/x:x", "x/x", *tails}
    candidates = {arn}
    for _ in range(arn.count("*")):
        candidates = {c.replace("*", filling, 1) for c in candidates for filling in fillings}
    return any(pattern.fullmatch(candidate) for candidate in candidates)


@cache
def botocore_operations(prefix: str) -> frozenset[str]:
    service = BOTOCORE_SERVICE.get(prefix, prefix)
    return frozenset(botocore.session.get_session().get_service_model(service).operation_names)


def test_every_action_is_one_aws_knows(templates):
    prefixes = set(get_all_service_prefixes())
    checked_in_botocore = set()
    for stack, template, _ in templates:
        for statement in identity_statements(template):
            for action in _as_list(statement["Action"]):
                service, name = action.split(":")
                assert service in prefixes, f"{stack}: {action}: no such IAM service prefix"
                if action in get_actions_for_service(service):
                    continue
                assert name in botocore_operations(service), f"{stack}: {action}: not an action of {service}"
                checked_in_botocore.add(action)
    assert checked_in_botocore == ONLY_IN_BOTOCORE


def test_every_resource_is_a_well_formed_arn_that_one_of_its_actions_applies_to(templates):
    seen_exceptions = set()
    for stack, template, _ in templates:
        for statement in identity_statements(template):
            actions = [a for a in _as_list(statement["Action"]) if action_formats(a) is not None]
            for arn in resolved(statement["Resource"], template):
                assert arn == "*" or re.fullmatch(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:.+", arn), (stack, arn)
                matching = [a for a in actions if any(applies(arn, f) for f in action_formats(a))]
                exceptions = {(a, resource_part(arn)) for a in actions} & DOCUMENTED_BEYOND_THE_DATABASE
                seen_exceptions |= exceptions
                assert matching or exceptions or not actions, (
                    f"{stack}: {statement.get('Sid')}: {arn} fits none of {actions}"
                )
            for action in actions:
                arns = resolved(statement["Resource"], template)
                assert (
                    any(applies(arn, f) for arn in arns for f in action_formats(action))
                    or {(action, arn.split(":", 5)[5]) for arn in arns if arn != "*"} & DOCUMENTED_BEYOND_THE_DATABASE
                ), f"{stack}: {action} applies to none of {arns}"
    assert seen_exceptions == DOCUMENTED_BEYOND_THE_DATABASE


def test_the_checks_refuse_what_they_exist_to_refuse():
    """A lower-case endpoint ARN fits InvokeEndpoint; a table ARN does not; PutVectors takes an index."""
    invoke = action_formats("sagemaker:InvokeEndpoint")
    assert any(applies(ARN_SAMPLES["AWS::SageMaker::Endpoint"], f) for f in invoke)
    assert not any(applies(ARN_SAMPLES["AWS::DynamoDB::Table"], f) for f in invoke)
    index = "arn:aws:s3vectors:us-east-1:123456789012:bucket/vectors/index/*"
    assert any(applies(index, f) for f in action_formats("s3vectors:PutVectors"))
    assert not any(applies("arn:aws:s3:::bucket/*", f) for f in action_formats("s3:ListBucket"))
    assert action_formats("s3vectors:MadeUpAction") is None
    assert "ListObjectsV2" not in get_actions_for_service("s3")  # an API name is not always an action


def resource_part(arn: str) -> str:
    """``arn:aws:states:r:a:execution:x/*`` -> ``execution:x/*``."""
    return arn.split(":", 5)[5] if arn.count(":") >= 5 else arn


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def test_samples_cover_every_parameter_an_identity_policy_reads(templates):
    for stack, template, _ in templates:
        text = json.dumps(identity_statements(template))
        for parameter in template.get("Parameters", {}):
            if f'"Ref": "{parameter}"' in text:
                assert parameter in PARAMETER_SAMPLES, f"{stack}: no sample ARN for parameter {parameter}"
