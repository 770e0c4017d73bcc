"""The root template's CloudFormation parameters and conditions.

Context flags choose the defaults; a later parameter update switches the feature, the libraries,
the explorer, the authorization, the stage, the throttling and the compute size without
re-synthesizing. The parameters are grouped and labelled for the CloudFormation console.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnCondition, CfnParameter, Fn, ICfnConditionExpression, Stack

from infra.config import AUTH_TYPES, LAMBDA_MEMORY_RANGE, STAGE_PATTERN, Config
from infra.nested import expression
from infra.sagemaker_hosting import gpu_instance_types

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


@dataclass(frozen=True)
class ParameterSpec:
    """One root parameter: a Number when it has a range, else a String; ``label`` names it in the console."""

    logical_id: str
    label: str
    default: str | float
    description: str
    allowed_values: list[str] | None = None
    range: tuple[float, float] | None = None
    allowed_pattern: str | None = None
    constraint_description: str | None = None

    def add_to(self, stack: Stack) -> CfnParameter:
        low, high = self.range or (None, None)
        return CfnParameter(
            stack,
            self.logical_id,
            type="String" if self.range is None else "Number",
            default=self.default,
            allowed_values=self.allowed_values,
            min_value=low,
            max_value=high,
            allowed_pattern=self.allowed_pattern,
            constraint_description=self.constraint_description,
            description=self.description,
        )


def switch(logical_id: str, label: str, on: bool, description: str) -> ParameterSpec:
    """A yes/no parameter whose default is the context flag."""
    return ParameterSpec(logical_id, label, yes_no(on), description, allowed_values=YES_NO)


def parameter_groups(config: Config) -> dict[str, list[ParameterSpec]]:
    """The root parameters by console group, in order."""
    return {
        "Features": [
            switch(
                "ImageSimilarity",
                "Image Similarity",
                config.image_similarity,
                "yes: deploy the Image Similarity API (functions, endpoint, REST API). no: remove them "
                "(the libraries' data is kept).",
            ),
            switch(
                "Libraries",
                "Image libraries (S3 Vectors)",
                config.libraries,
                "yes: image libraries on Amazon S3 Vectors and DynamoDB. Choose no in a Region "
                "without S3 Vectors; switching to no keeps the stored data (retained).",
            ),
            switch(
                "ApiExplorer",
                "API Explorer",
                config.explorer,
                "yes: serve the API Explorer (Swagger UI) at /api-explorer. Its Try it out calls the API from the "
                "browser, which needs ApiAuthorization NONE or API_KEY (a browser cannot sign AWS_IAM requests).",
            ),
        ],
        "API Gateway": [
            ParameterSpec(
                "ApiAuthorization",
                "API Gateway Authorization",
                config.auth,
                "AWS_IAM: callers sign requests with SigV4 and need execute-api:Invoke. "
                "API_KEY: callers send the stack's API key in the x-api-key header, within the usage plan below. "
                "NONE: open to anyone who has the URL.",
                allowed_values=list(AUTH_TYPES),
            ),
            ParameterSpec(
                "StageName",
                "Stage name",
                config.stage,
                "API Gateway stage name (the first path segment of the API URL).",
                allowed_pattern=STAGE_PATTERN,
            ),
            ParameterSpec(
                "ThrottlingRateLimit",
                "Throttling rate (requests/s)",
                config.throttle_rate,
                "Steady-state requests per second the stage accepts.",
                range=(0.1, 10000),
            ),
            ParameterSpec(
                "ThrottlingBurstLimit",
                "Throttling burst (requests)",
                config.throttle_burst,
                "Requests the stage accepts in a burst above the rate.",
                range=(1, 5000),
            ),
        ],
        "API key and usage plan (ApiAuthorization API_KEY)": [
            ParameterSpec(
                "ApiKeyRateLimit",
                "API key rate (requests/s)",
                API_KEY_RATE_LIMIT,
                "API_KEY authorization: steady-state requests per second the API key may send.",
                range=(0.1, 10000),
            ),
            ParameterSpec(
                "ApiKeyBurstLimit",
                "API key burst (requests)",
                API_KEY_BURST_LIMIT,
                "API_KEY authorization: requests the API key may send in a burst above the rate.",
                range=(1, 5000),
            ),
            ParameterSpec(
                "ApiKeyDailyQuota",
                "API key daily quota (requests/day)",
                API_KEY_DAILY_QUOTA,
                "API_KEY authorization: requests the API key may send per day (UTC); more are answered 429.",
                range=(1, 1_000_000_000),
            ),
        ],
        "Firewall (AWS WAF)": [
            switch(
                "Waf",
                "AWS WAF web ACL",
                config.waf,
                "yes: an AWS WAF web ACL in front of the stage (AWS managed common rules, IP reputation "
                "list, a rate limit per IP address); about 8 USD a month plus 0.60 USD per million requests.",
            ),
            ParameterSpec(
                "WafRateLimit",
                "WAF rate limit (requests per IP per 5 minutes)",
                WAF_RATE_LIMIT,
                "Waf yes: requests one IP address may send in 5 minutes before WAF blocks it.",
                range=(100, 2_000_000_000),
            ),
        ],
        f"Compute ({config.backend} backend)": [_compute_spec(config)],
        "Bulk imports": [_import_spec()],
    }


def add_root_parameters(stack: Stack, config: Config) -> RootParameters:
    groups = parameter_groups(config)
    specs = [spec for group in groups.values() for spec in group]
    parameters = {spec.logical_id: spec.add_to(stack) for spec in specs}

    def equals(logical_id: str, value: str) -> ICfnConditionExpression:
        return Fn.condition_equals(parameters[logical_id].value_as_string, value)

    feature_on = CfnCondition(stack, "ImageSimilarityOn", expression=equals("ImageSimilarity", "yes"))
    feature = expression(feature_on)
    explorer_on = CfnCondition(
        stack, "ApiExplorerOn", expression=Fn.condition_and(feature, equals("ApiExplorer", "yes"))
    )
    libraries_on = CfnCondition(stack, "LibrariesOn", expression=equals("Libraries", "yes"))
    api_key_on = CfnCondition(
        stack, "ApiKeyOn", expression=Fn.condition_and(feature, equals("ApiAuthorization", "API_KEY"))
    )
    waf_on = CfnCondition(stack, "WafOn", expression=Fn.condition_and(feature, equals("Waf", "yes")))
    imports_on = CfnCondition(stack, "ImportsOn", expression=Fn.condition_and(feature, expression(libraries_on)))

    stack.template_options.metadata = {
        "AWS::CloudFormation::Interface": {
            "ParameterGroups": [
                {"Label": {"default": label}, "Parameters": [spec.logical_id for spec in group]}
                for label, group in groups.items()
            ],
            "ParameterLabels": {spec.logical_id: {"default": spec.label} for spec in specs},
        }
    }
    return RootParameters(
        image_similarity=parameters["ImageSimilarity"],
        libraries=parameters["Libraries"],
        explorer=parameters["ApiExplorer"],
        authorization=parameters["ApiAuthorization"],
        stage_name=parameters["StageName"],
        throttling_rate=parameters["ThrottlingRateLimit"],
        throttling_burst=parameters["ThrottlingBurstLimit"],
        compute=parameters[_compute_spec(config).logical_id],
        api_key_rate=parameters["ApiKeyRateLimit"],
        api_key_burst=parameters["ApiKeyBurstLimit"],
        api_key_daily_quota=parameters["ApiKeyDailyQuota"],
        waf=parameters["Waf"],
        waf_rate_limit=parameters["WafRateLimit"],
        feature_on=feature_on,
        explorer_on=explorer_on,
        libraries_on=libraries_on,
        api_key_on=api_key_on,
        waf_on=waf_on,
        import_concurrency=parameters["ImportMaxConcurrency"],
        imports_on=imports_on,
    )


def _import_spec() -> ParameterSpec:
    from infra.imports_stack import DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY_RANGE

    return ParameterSpec(
        "ImportMaxConcurrency",
        "Import batches at once",
        DEFAULT_MAX_CONCURRENCY,
        "Batches of 32 images a bulk import embeds and writes at once (the Distributed Map's "
        "MaxConcurrency). The default stays under S3 Vectors' write limits per index; see docs/imports.md.",
        range=MAX_CONCURRENCY_RANGE,
    )


def _compute_spec(config: Config) -> ParameterSpec:
    if config.backend == "lambda":
        return ParameterSpec(
            "LambdaMemorySize",
            "Lambda memory (MB)",
            config.lambda_memory,
            "Memory of the model function in MB; Lambda gives CPU in proportion (about 1 vCPU per 1,769 MB).",
            range=LAMBDA_MEMORY_RANGE,
        )
    return ParameterSpec(
        "SageMakerInstanceType",
        "SageMaker instance type",
        config.sagemaker_instance_type,
        "Instance type of the SageMaker endpoint (a GPU type such as ml.g4dn.xlarge).",
        allowed_values=list(gpu_instance_types()),
    )
