"""Monitoring nested stack: a CloudWatch dashboard and alarms on the API's 5xx rate and latency.

The dashboard shows requests, latency p50/p99, 4xx/5xx (API Gateway counts its throttled answers,
429, among the 4xx), and the backend: the function's duration, errors and throttles, or the
endpoint's invocations, model latency and errors.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import Config
from infra.nested import ParameterizedNestedStack
from infra.sagemaker_endpoint import VARIANT

PERIOD = Duration.minutes(5)
FIVE_XX_RATE_THRESHOLD = 0.05  # 5% of requests


class MonitoringStack(ParameterizedNestedStack):
    """Inputs: ``StageName``, ``FunctionName`` and, on the sagemaker backend, ``EndpointName``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: dashboard and alarms", **kwargs)
        api = {"ApiName": config.api_name, "Stage": self.input("StageName")}

        def api_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=name,
                dimensions_map=api,
                statistic=statistic,
                period=PERIOD,
                label=label,
            )

        requests = api_metric("Count", "Sum", "requests")
        latency_p50 = api_metric("Latency", "p50", "latency p50 (ms)")
        latency_p99 = api_metric("Latency", "p99", "latency p99 (ms)")
        errors_4xx = api_metric("4XXError", "Sum", "4xx (incl. 429 throttled)")
        errors_5xx = api_metric("5XXError", "Sum", "5xx")

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

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Requests", left=[requests], width=8),
            cloudwatch.GraphWidget(title="Latency", left=[latency_p50, latency_p99], width=8),
            cloudwatch.GraphWidget(title="Errors and throttles", left=[errors_4xx, errors_5xx], width=8),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmWidget(title="5xx rate", alarm=self.five_xx_alarm, width=12),
            cloudwatch.AlarmWidget(title="Latency p99", alarm=self.latency_alarm, width=12),
        )
        self.dashboard.add_widgets(*self._backend_widgets(config))

    def _backend_widgets(self, config: Config) -> list[cloudwatch.IWidget]:
        function = {"FunctionName": self.input("FunctionName")}

        def lambda_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name=name,
                dimensions_map=function,
                statistic=statistic,
                period=PERIOD,
                label=label,
            )

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
                return cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name=name,
                    dimensions_map=endpoint,
                    statistic=statistic,
                    period=PERIOD,
                    label=label,
                )

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
