"""The root template's CloudFormation parameters and conditions.

Context flags choose the defaults; a later parameter update switches the feature, the libraries,
the explorer, the authorization, the stage, the throttling and the compute size without
re-synthesizing. The parameters are grouped and labelled for the CloudFormation console.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnCondition, CfnParameter, Fn, Stack

from infra.config import AUTH_TYPES, GPU_FAMILIES, INSTANCE_TYPE_PATTERN, LAMBDA_MEMORY_RANGE, STAGE_PATTERN, Config
from infra.nested import expression

YES_NO = ["yes", "no"]
# The usage plan of the stack's API key (ApiAuthorization API_KEY); changed by a parameter update.
API_KEY_RATE_LIMIT = 5
API_KEY_BURST_LIMIT = 10
API_KEY_DAILY_QUOTA = 10_000
WAF_RATE_LIMIT = 1000  # requests per IP address in 5 minutes


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


@dataclass(frozen=True)
class RootParameters:
    image_similarity: CfnParameter
    libraries: CfnParameter
    explorer: CfnParameter
    authorization: CfnParameter
    stage_name: CfnParameter
    throttling_rate: CfnParameter
    throttling_burst: CfnParameter
    compute: CfnParameter
    """``LambdaMemorySize`` (lambda backend) or ``SageMakerInstanceType`` (sagemaker backend)."""
    api_key_rate: CfnParameter
    api_key_burst: CfnParameter
    api_key_daily_quota: CfnParameter
    waf: CfnParameter
    waf_rate_limit: CfnParameter
    feature_on: CfnCondition
    explorer_on: CfnCondition
    libraries_on: CfnCondition
    api_key_on: CfnCondition
    waf_on: CfnCondition
    import_concurrency: CfnParameter
    """``ImportMaxConcurrency``: batches a bulk import runs at once (infra/imports_stack.py)."""
    imports_on: CfnCondition


def add_root_parameters(stack: Stack, config: Config) -> RootParameters:
    image_similarity = CfnParameter(
        stack,
        "ImageSimilarity",
        type="String",
        allowed_values=YES_NO,
        default=yes_no(config.image_similarity),
        description="yes: deploy the Image Similarity API (functions, endpoint, REST API). no: remove them "
        "(the libraries' data is kept).",
    )
    libraries = CfnParameter(
        stack,
        "Libraries",
        type="String",
        allowed_values=YES_NO,
        default=yes_no(config.libraries),
        description="yes: image libraries on Amazon S3 Vectors and DynamoDB. Choose no in a Region "
        "without S3 Vectors; switching to no keeps the stored data (retained).",
    )
    explorer = CfnParameter(
        stack,
        "ApiExplorer",
        type="String",
        allowed_values=YES_NO,
        default=yes_no(config.explorer),
        description="yes: serve the API Explorer (Swagger UI) at /api-explorer. Its Try it out calls the API "
        "from the browser, which needs ApiAuthorization NONE or API_KEY (a browser cannot sign AWS_IAM requests).",
    )
    authorization = CfnParameter(
        stack,
        "ApiAuthorization",
        type="String",
        allowed_values=list(AUTH_TYPES),
        default=config.auth,
        description="AWS_IAM: callers sign requests with SigV4 and need execute-api:Invoke. "
        "API_KEY: callers send the stack's API key in the x-api-key header, within the usage plan below. "
        "NONE: open to anyone who has the URL.",
    )
    stage_name = CfnParameter(
        stack,
        "StageName",
        type="String",
        default=config.stage,
        allowed_pattern=STAGE_PATTERN,
        description="API Gateway stage name (the first path segment of the API URL).",
    )
    throttling_rate = CfnParameter(
        stack,
        "ThrottlingRateLimit",
        type="Number",
        default=config.throttle_rate,
        min_value=0.1,
        max_value=10000,
        description="Steady-state requests per second the stage accepts.",
    )
    throttling_burst = CfnParameter(
        stack,
        "ThrottlingBurstLimit",
        type="Number",
        default=config.throttle_burst,
        min_value=1,
        max_value=5000,
        description="Requests the stage accepts in a burst above the rate.",
    )
    compute = _compute_parameter(stack, config)
    api_key_rate = CfnParameter(
        stack,
        "ApiKeyRateLimit",
        type="Number",
        default=API_KEY_RATE_LIMIT,
        min_value=0.1,
        max_value=10000,
        description="API_KEY authorization: steady-state requests per second the API key may send.",
    )
    api_key_burst = CfnParameter(
        stack,
        "ApiKeyBurstLimit",
        type="Number",
        default=API_KEY_BURST_LIMIT,
        min_value=1,
        max_value=5000,
        description="API_KEY authorization: requests the API key may send in a burst above the rate.",
    )
    api_key_daily_quota = CfnParameter(
        stack,
        "ApiKeyDailyQuota",
        type="Number",
        default=API_KEY_DAILY_QUOTA,
        min_value=1,
        max_value=1_000_000_000,
        description="API_KEY authorization: requests the API key may send per day (UTC); more are answered 429.",
    )
    waf = CfnParameter(
        stack,
        "Waf",
        type="String",
        allowed_values=YES_NO,
        default=yes_no(config.waf),
        description="yes: an AWS WAF web ACL in front of the stage (AWS managed common rules, IP reputation "
        "list, a rate limit per IP address); about 8 USD a month plus 0.60 USD per million requests.",
    )
    waf_rate_limit = CfnParameter(
        stack,
        "WafRateLimit",
        type="Number",
        default=WAF_RATE_LIMIT,
        min_value=100,
        max_value=2_000_000_000,
        description="Waf yes: requests one IP address may send in 5 minutes before WAF blocks it.",
    )

    feature_on = CfnCondition(
        stack, "ImageSimilarityOn", expression=Fn.condition_equals(image_similarity.value_as_string, "yes")
    )
    explorer_on = CfnCondition(
        stack,
        "ApiExplorerOn",
        expression=Fn.condition_and(expression(feature_on), Fn.condition_equals(explorer.value_as_string, "yes")),
    )
    libraries_on = CfnCondition(stack, "LibrariesOn", expression=Fn.condition_equals(libraries.value_as_string, "yes"))
    api_key_on = CfnCondition(
        stack,
        "ApiKeyOn",
        expression=Fn.condition_and(
            expression(feature_on), Fn.condition_equals(authorization.value_as_string, "API_KEY")
        ),
    )
    waf_on = CfnCondition(
        stack,
        "WafOn",
        expression=Fn.condition_and(expression(feature_on), Fn.condition_equals(waf.value_as_string, "yes")),
    )
    import_concurrency, imports_on = _import_parameter(stack, feature_on, libraries_on)

    stack.template_options.metadata = {
        "AWS::CloudFormation::Interface": {
            "ParameterGroups": [
                {
                    "Label": {"default": "Features"},
                    "Parameters": [image_similarity.logical_id, libraries.logical_id, explorer.logical_id],
                },
                {
                    "Label": {"default": "API Gateway"},
                    "Parameters": [
                        authorization.logical_id,
                        stage_name.logical_id,
                        throttling_rate.logical_id,
                        throttling_burst.logical_id,
                    ],
                },
                {
                    "Label": {"default": "API key and usage plan (ApiAuthorization API_KEY)"},
                    "Parameters": [api_key_rate.logical_id, api_key_burst.logical_id, api_key_daily_quota.logical_id],
                },
                {"Label": {"default": "Firewall (AWS WAF)"}, "Parameters": [waf.logical_id, waf_rate_limit.logical_id]},
                {"Label": {"default": f"Compute ({config.backend} backend)"}, "Parameters": [compute.logical_id]},
                {"Label": {"default": "Bulk imports"}, "Parameters": [import_concurrency.logical_id]},
            ],
            "ParameterLabels": {
                image_similarity.logical_id: {"default": "Image Similarity"},
                libraries.logical_id: {"default": "Image libraries (S3 Vectors)"},
                explorer.logical_id: {"default": "API Explorer"},
                authorization.logical_id: {"default": "API Gateway Authorization"},
                stage_name.logical_id: {"default": "Stage name"},
                throttling_rate.logical_id: {"default": "Throttling rate (requests/s)"},
                throttling_burst.logical_id: {"default": "Throttling burst (requests)"},
                api_key_rate.logical_id: {"default": "API key rate (requests/s)"},
                api_key_burst.logical_id: {"default": "API key burst (requests)"},
                api_key_daily_quota.logical_id: {"default": "API key daily quota (requests/day)"},
                waf.logical_id: {"default": "AWS WAF web ACL"},
                waf_rate_limit.logical_id: {"default": "WAF rate limit (requests per IP per 5 minutes)"},
                compute.logical_id: {
                    "default": "Lambda memory (MB)" if config.backend == "lambda" else "SageMaker instance type"
                },
                import_concurrency.logical_id: {"default": "Import batches at once"},
            },
        }
    }
    return RootParameters(
        image_similarity,
        libraries,
        explorer,
        authorization,
        stage_name,
        throttling_rate,
        throttling_burst,
        compute,
        api_key_rate,
        api_key_burst,
        api_key_daily_quota,
        waf,
        waf_rate_limit,
        feature_on,
        explorer_on,
        libraries_on,
        api_key_on,
        waf_on,
        import_concurrency,
        imports_on,
    )


def _import_parameter(
    stack: Stack, feature_on: CfnCondition, libraries_on: CfnCondition
) -> tuple[CfnParameter, CfnCondition]:
    from infra.imports_stack import DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY_RANGE

    low, high = MAX_CONCURRENCY_RANGE
    concurrency = CfnParameter(
        stack,
        "ImportMaxConcurrency",
        type="Number",
        default=DEFAULT_MAX_CONCURRENCY,
        min_value=low,
        max_value=high,
        description="Batches of 32 images a bulk import embeds and writes at once (the Distributed Map's "
        "MaxConcurrency). The default stays under S3 Vectors' write limits per index; see docs/imports.md.",
    )
    imports_on = CfnCondition(
        stack, "ImportsOn", expression=Fn.condition_and(expression(feature_on), expression(libraries_on))
    )
    return concurrency, imports_on


def _compute_parameter(stack: Stack, config: Config) -> CfnParameter:
    if config.backend == "lambda":
        low, high = LAMBDA_MEMORY_RANGE
        return CfnParameter(
            stack,
            "LambdaMemorySize",
            type="Number",
            default=config.lambda_memory,
            min_value=low,
            max_value=high,
            description="Memory of the model function in MB; Lambda gives CPU in proportion "
            "(about 1 vCPU per 1,769 MB).",
        )
    return CfnParameter(
        stack,
        "SageMakerInstanceType",
        type="String",
        default=config.sagemaker_instance_type,
        allowed_pattern=INSTANCE_TYPE_PATTERN,
        constraint_description=f"a GPU instance type of a family {', '.join(GPU_FAMILIES)} (ml.<family>.<size>xlarge)",
        description="Instance type of the SageMaker endpoint (a GPU type such as ml.g4dn.xlarge).",
    )
