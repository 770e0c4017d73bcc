"""Monitoring nested stack: a CloudWatch dashboard and alarms.

Two sources. API Gateway's own metrics (``AWS/ApiGateway``) see every answer, a function's
timeout or crash included: requests, latency p50/p99, 4xx (429 throttled among them) and 5xx.
The runtime's metrics (``ImageSimilarity``, written by Powertools in the embedded metric format,
see ``runtime/observability.py``; names in ``runtime/contract.py``) say what happened inside:
requests by route and outcome (``ok`` or the error code), p99 latency by route, the rate of
``url_*`` failures, images and texts embedded, batch sizes, library adds and duplicates refused,
import progress. Then the backend: the function's duration, errors and throttles, or the
endpoint's invocations, model latency and errors.

Alarms: the 5xx rate and the p99 latency (API Gateway), and the rate of URL inputs that could
not be fetched (runtime), once there are enough requests for a rate to mean something.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import Config
from infra.nested import ParameterizedNestedStack
from infra.sagemaker_endpoint import VARIANT
from runtime import contract
from runtime.contract import METRICS_NAMESPACE, SERVICE_NAME

PERIOD = Duration.minutes(5)
FIVE_XX_RATE_THRESHOLD = 0.05  # 5% of requests
URL_FAILURE_RATE_THRESHOLD = 0.25  # a quarter of requests: egress (DNS, NAT) broken, or a client's URLs gone
URL_FAILURE_MIN_REQUESTS = 20  # in a period; below it the rate is not evaluated

POWERTOOLS_ENVIRONMENT = {
    contract.SERVICE_NAME_VARIABLE: SERVICE_NAME,
    contract.METRICS_NAMESPACE_VARIABLE: METRICS_NAMESPACE,
    contract.LOG_LEVEL_VARIABLE: contract.DEFAULT_LOG_LEVEL,
}
"""Every function's Powertools settings: the runtime's metrics land where the dashboard reads them."""


def metric(namespace: str, name: str, dimensions: dict[str, str], statistic: str, label: str) -> cloudwatch.Metric:
    """Every metric of the dashboard and the alarms, over the same period."""
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=PERIOD,
        label=label,
    )


def search(name: str, statistic: str, *dimensions: str) -> cloudwatch.MathExpression:
    """One line per value of ``dimensions`` seen so far (routes, outcomes): a search over the runtime's
    metrics, so a new route or error code needs no dashboard change."""
    schema = ",".join([METRICS_NAMESPACE, *sorted([*dimensions, contract.SERVICE_DIMENSION])])
    expression = f"SEARCH('{{{schema}}} MetricName=\"{name}\"', '{statistic}', {int(PERIOD.to_seconds())})"
    return cloudwatch.MathExpression(expression=expression, label="", period=PERIOD)


class MonitoringStack(ParameterizedNestedStack):
    """Inputs: ``StageName``, ``FunctionName`` and, on the sagemaker backend, ``EndpointName``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: dashboard and alarms", **kwargs)
        api = {"ApiName": config.api_name, "Stage": self.input("StageName")}
        service = {contract.SERVICE_DIMENSION: SERVICE_NAME}

        def api_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return metric("AWS/ApiGateway", name, api, statistic, label)

        def runtime_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return metric(METRICS_NAMESPACE, name, service, statistic, label)

        latency_p99 = api_metric("Latency", "p99", "latency p99 (ms)")
        self.five_xx_alarm = cloudwatch.Alarm(
            self,
            "FiveXxRateAlarm",
            alarm_description="More than 5% of the API's answers are 5xx",
            metric=api_metric("5XXError", "Average", "5xx rate"),
            threshold=FIVE_XX_RATE_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.latency_alarm = cloudwatch.Alarm(
            self,
            "LatencyAlarm",
            alarm_description=f"The API's p99 latency is above {config.latency_alarm_ms} ms",
            metric=latency_p99,
            threshold=config.latency_alarm_ms,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        url_failure_rate = cloudwatch.MathExpression(
            expression=f"IF(requests >= {URL_FAILURE_MIN_REQUESTS}, failures / requests, 0)",
            using_metrics={
                "failures": runtime_metric(contract.URL_FAILURES_METRIC, "Sum", "url_* failures"),
                "requests": runtime_metric(contract.REQUESTS_METRIC, "Sum", "requests"),
            },
            label="url_* failure rate",
            period=PERIOD,
        )
        self.url_failure_alarm = cloudwatch.Alarm(
            self,
            "UrlFailureRateAlarm",
            alarm_description=f"More than {URL_FAILURE_RATE_THRESHOLD:.0%} of requests failed to fetch a URL input "
            f"(url_* codes), with at least {URL_FAILURE_MIN_REQUESTS} requests in 5 minutes",
            metric=url_failure_rate,
            threshold=URL_FAILURE_RATE_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Requests", left=[api_metric("Count", "Sum", "requests")], width=8),
            cloudwatch.GraphWidget(
                title="Latency", left=[api_metric("Latency", "p50", "latency p50 (ms)"), latency_p99], width=8
            ),
            cloudwatch.GraphWidget(
                title="Errors and throttles",
                left=[api_metric("4XXError", "Sum", "4xx (incl. 429 throttled)"), api_metric("5XXError", "Sum", "5xx")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmWidget(title="5xx rate", alarm=self.five_xx_alarm, width=8),
            cloudwatch.AlarmWidget(title="Latency p99", alarm=self.latency_alarm, width=8),
            cloudwatch.AlarmWidget(title="url_* failure rate", alarm=self.url_failure_alarm, width=8),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests by route",
                left=[search(contract.REQUESTS_METRIC, "Sum", contract.ROUTE_DIMENSION)],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Latency p99 by route (ms)",
                left=[search(contract.LATENCY_METRIC, "p99", contract.ROUTE_DIMENSION)],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Requests by outcome (ok or error code)",
                left=[search(contract.REQUESTS_METRIC, "Sum", contract.ROUTE_DIMENSION, contract.OUTCOME_DIMENSION)],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Images and texts embedded",
                left=[
                    runtime_metric(contract.IMAGES_EMBEDDED_METRIC, "Sum", "images"),
                    runtime_metric(contract.TEXTS_EMBEDDED_METRIC, "Sum", "texts"),
                ],
                right=[
                    runtime_metric(contract.BATCH_SIZE_METRIC, "p50", "batch size p50"),
                    runtime_metric(contract.BATCH_SIZE_METRIC, "Maximum", "max"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Library adds",
                left=[
                    runtime_metric(contract.IMAGES_ADDED_METRIC, "Sum", "added"),
                    runtime_metric(contract.DUPLICATES_REFUSED_METRIC, "Sum", "near-duplicates refused"),
                    runtime_metric(contract.EXACT_DUPLICATES_REFUSED_METRIC, "Sum", "exact duplicates refused"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Imports",
                left=[
                    runtime_metric(contract.IMPORTED_IMAGES_METRIC, "Sum", "imported"),
                    runtime_metric(contract.IMPORT_DUPLICATES_METRIC, "Sum", "duplicates"),
                    runtime_metric(contract.IMPORT_FAILURES_METRIC, "Sum", "failed"),
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(*self._backend_widgets(config))

    def _backend_widgets(self, config: Config) -> list[cloudwatch.IWidget]:
        function = {"FunctionName": self.input("FunctionName")}

        def lambda_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return metric("AWS/Lambda", name, function, statistic, label)

        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(
                title="Function duration",
                width=8,
                left=[lambda_metric("Duration", "p50", "p50 (ms)"), lambda_metric("Duration", "p99", "p99 (ms)")],
            ),
            cloudwatch.GraphWidget(
                title="Function errors and throttles",
                width=8,
                left=[lambda_metric("Errors", "Sum", "errors"), lambda_metric("Throttles", "Sum", "throttles")],
            ),
            cloudwatch.GraphWidget(
                title="Function concurrency",
                width=8,
                left=[lambda_metric("ConcurrentExecutions", "Maximum", "concurrent executions")],
            ),
        ]
        if config.backend == "sagemaker":
            endpoint = {"EndpointName": self.input("EndpointName"), "VariantName": VARIANT}

            def endpoint_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
                return metric("AWS/SageMaker", name, endpoint, statistic, label)

            widgets += [
                cloudwatch.GraphWidget(
                    title="Endpoint invocations",
                    width=8,
                    left=[
                        endpoint_metric("Invocations", "Sum", "invocations"),
                        endpoint_metric("InvocationsPerInstance", "Sum", "per instance"),
                    ],
                ),
                cloudwatch.GraphWidget(
                    title="Endpoint model latency",
                    width=8,
                    left=[
                        endpoint_metric("ModelLatency", "p50", "p50 (us)"),
                        endpoint_metric("ModelLatency", "p99", "p99 (us)"),
                    ],
                ),
                cloudwatch.GraphWidget(
                    title="Endpoint errors",
                    width=8,
                    left=[
                        endpoint_metric("Invocation4XXErrors", "Sum", "4xx"),
                        endpoint_metric("Invocation5XXErrors", "Sum", "5xx"),
                    ],
                ),
            ]
        return widgets
