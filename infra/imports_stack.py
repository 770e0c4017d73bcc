"""Imports nested stack: bulk imports into image libraries on Step Functions Distributed Map.

- A state machine: a Choice between two Distributed Maps, one whose ItemReader lists an S3 prefix
  (ListObjectsV2), one that reads a JSONL manifest; each batches items (ItemBatcher), runs at most
  ``MaxConcurrency`` batches at once (a root parameter), tolerates a percentage of failed batches,
  and writes every batch's answer to the results bucket (ResultWriter). Each batch is one call of
  the worker function, retried with backoff when S3 Vectors throttles or the library is busy.
- The worker function: the backend's image with the command ``import_handler.handler`` (the model
  image on the lambda backend; the front image calling the SageMaker endpoint on the sagemaker one).
- A DynamoDB table of the job records, and a managed policy the API function's role attaches
  (StartExecution, DescribeExecution, StopExecution, the table, the results bucket). The results
  bucket is the storage stack's (kept when imports are switched off, so a flip leaks none).

Conditional (in the root) on ``ImageSimilarity=yes`` and ``Libraries=yes``. IAM is scoped to this
stack's resources, the library storage and the buckets the deployer listed in ``s3_read_buckets``.
The defaults and their arithmetic against S3 Vectors' write limits are in docs/imports.md.
"""

from __future__ import annotations

import json
from typing import Any, cast

from aws_cdk import Aws, CfnOutput, CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import LAMBDA_ENGINE, Config
from infra.environment import settings_environment
from infra.functions import ContainerFunction
from infra.images_stack import ImagesStack
from infra.nag import acknowledge, resource_finding
from infra.nested import ParameterizedNestedStack
from infra.permissions import library_statements, log_group_arn, s3_objects_arn
from infra.storage_stack import keyed_table

BATCH_SIZE = 32
"""Images per batch: one forward pass and one PutVectors call (S3 Vectors takes up to 500)."""
DEFAULT_MAX_CONCURRENCY = 8
"""Batches at once: see docs/imports.md for why this stays under S3 Vectors' per-index write limits."""
MAX_CONCURRENCY_RANGE = (1, 40)
TOLERATED_FAILURE_PERCENTAGE = 5
"""Batches that fail after their retries (not items: a bad image is a failed item in a batch that succeeds)."""
WORKER_TIMEOUT = Duration.minutes(4)
LIBRARY_WAIT_S = 120
"""How long a worker batch waits for the library's write lease (the API's own adds wait 10 s)."""
TASK_TIMEOUT_S = int(WORKER_TIMEOUT.to_seconds()) + 30
"""One attempt of a batch, as Step Functions bounds it: the worker's own timeout, and room for its start."""
CHILD_EXECUTION_TYPE = "STANDARD"
"""A batch's worst case (7 attempts of up to 270 s with backoff between: about 33 minutes) is far past an
EXPRESS child's 5 minutes; STANDARD children have a year. They cost state transitions (about 4 a batch
of 32 images: about $0.003 per 1,000 images), well under the worker's Lambda time."""
MAX_INPUT_BYTES_PER_BATCH = 200 * 1024
"""Under Step Functions' 256 KiB execution input, with room for BatchInput: long manifest lines make smaller batches."""
WORKER_FRONT_MEMORY_MB = 2048
RETRIED_ERRORS = [
    "StoreBusy",
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
]


def state_machine_definition(*, tolerated_failure_percentage: int = TOLERATED_FAILURE_PERCENTAGE) -> dict[str, Any]:
    """The ASL; CloudFormation substitutes ``${WorkerArn}``, ``${ResultsBucket}``, ``${MaxConcurrency}``
    and ``${Partition}``.

    ``MaxConcurrency`` must be a number in the ASL but a substitution is text: the first state turns
    it into a number in the state (``States.StringToJson``), and the maps read it with ``MaxConcurrencyPath``.
    """

    def distributed_map(task: str, reader: dict[str, Any], batch_input: dict[str, str]) -> dict[str, Any]:
        """``task`` names the map's one state: state names are unique in the whole state machine."""
        return {
            "Type": "Map",
            "ItemReader": reader,
            "ItemBatcher": {
                "MaxItemsPerBatch": BATCH_SIZE,
                "MaxInputBytesPerBatch": MAX_INPUT_BYTES_PER_BATCH,
                "BatchInput": batch_input,
            },
            "MaxConcurrencyPath": "$.max_concurrency",
            "ToleratedFailurePercentage": tolerated_failure_percentage,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": CHILD_EXECUTION_TYPE},
                "StartAt": task,
                "States": {
                    task: {
                        "Type": "Task",
                        "Resource": "${WorkerArn}",  # the batch is the payload, its answer the output
                        "TimeoutSeconds": TASK_TIMEOUT_S,
                        "Retry": [
                            {
                                "ErrorEquals": RETRIED_ERRORS,
                                "IntervalSeconds": 2,
                                "BackoffRate": 2,
                                "MaxAttempts": 6,
                                "MaxDelaySeconds": 60,
                                "JitterStrategy": "FULL",
                            }
                        ],
                        "End": True,
                    }
                },
            },
            "ResultWriter": {
                "Resource": "arn:${Partition}:states:::s3:putObject",
                # From the context object only: the same whether Prefix.$ is read against the state's input
                # or against the Map's results (readings differ), and the execution's name is the import id.
                "Parameters": {
                    "Bucket": "${ResultsBucket}",
                    "Prefix.$": "States.Format('imports/{}', $$.Execution.Name)",
                },
            },
            "End": True,
        }

    job = {
        "import_id.$": "$.job.import_id",
        "library.$": "$.job.library",
        "dedup.$": "$.job.dedup",
        "threshold.$": "$.job.threshold",
    }
    return {
        "Comment": "Bulk import into an image library: one worker call per batch of images",
        "StartAt": "Settings",
        "States": {
            "Settings": {
                "Type": "Pass",
                "Parameters": {
                    "job.$": "$",
                    "max_concurrency.$": "States.StringToJson('${MaxConcurrency}')",
                },
                "Next": "Source",
            },
            "Source": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.job.kind", "StringEquals": "manifest", "Next": "ImportManifest"}],
                "Default": "ImportPrefix",
            },
            "ImportPrefix": distributed_map(
                "ImportPrefixBatch",
                {
                    "Resource": "arn:${Partition}:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket.$": "$.job.bucket", "Prefix.$": "$.job.prefix"},
                },
                {**job, "bucket.$": "$.job.bucket", "prefix.$": "$.job.prefix"},
            ),
            "ImportManifest": distributed_map(
                "ImportManifestBatch",
                {
                    "Resource": "arn:${Partition}:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSONL"},
                    "Parameters": {"Bucket.$": "$.job.bucket", "Key.$": "$.job.key"},
                },
                job,
            ),
        },
    }


class ImportsStack(ParameterizedNestedStack):
    """Inputs: ``VectorBucketName``, ``RegistryTableName``, ``RegistryTableArn``, ``ResultsBucketName``,
    ``MaxConcurrency``, ``LogGroupName`` (the worker's), ``StateMachineLogGroupName`` (made by the logs
    stack), and ``MemorySize`` (lambda) or ``EndpointName`` (sagemaker)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, images: ImagesStack, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: bulk imports (Step Functions)", **kwargs)
        self.config = config
        # In the storage stack, which stays when imports are switched off: a flip leaves no bucket behind.
        self.results = s3.Bucket.from_bucket_name(self, "Results", self.input("ResultsBucketName"))
        self.table = keyed_table(self, "JobTable", key="import_id")
        self.table.apply_removal_policy(RemovalPolicy.DESTROY)
        self.worker = self._worker(images)
        self.state_machine = self._state_machine()
        self.api_policy = self._api_policy()
        self.state_machine_arn = self.state_machine.attr_arn
        self.table_name = self.table.ref
        self.worker_role_name = self.worker.role.role_name
        """The backend stack lets this role call the SageMaker endpoint (see BackendStack)."""
        CfnOutput(self, "StateMachineArn", value=self.state_machine.attr_arn)

    def _worker(self, images: ImagesStack) -> ContainerFunction:
        config = self.config
        settings = {
            "model": config.model_arch,
            "pretrained": config.model_pretrained,
            "image_size": str(config.image_size),
            "store": "s3vectors",
            "vector_bucket": self.input("VectorBucketName"),
            "registry_table": self.input("RegistryTableName"),
            "s3_allowed_buckets": ",".join(config.s3_read_buckets),
            "import_table": self.table.ref,
            "import_batch": str(BATCH_SIZE),
            # Batches of one library take turns on its write lease; waiting beats failing and retrying.
            "library_wait_s": str(LIBRARY_WAIT_S),
        }
        if config.backend == "lambda":
            image, memory = images.model, self.input_number("MemorySize")
            settings["engine"] = LAMBDA_ENGINE
        else:
            image, memory = images.front, WORKER_FRONT_MEMORY_MB
            settings |= {"engine": "sagemaker", "sagemaker_endpoint": self.input("EndpointName")}
        assert image is not None, "the backend's image is built"
        environment = settings_environment(**settings)
        worker = ContainerFunction(
            self,
            "Worker",
            image=image,
            description=f"Image Similarity import worker ({config.backend} backend, {config.model_version})",
            log_group_name=self.input("LogGroupName"),
            memory_size=memory,
            timeout=WORKER_TIMEOUT,
            environment=environment,
            command=["import_handler.handler"],
        )
        statements = library_statements(self.input("VectorBucketName"), self.input("RegistryTableArn"))
        for statement in statements:
            worker.role.add_to_policy(statement)
        acknowledge(
            worker.role,
            "AwsSolutions-IAM5",
            "each library is one S3 Vectors index the API creates at run time, so the index ARNs are only "
            "known as <vector bucket ARN>/index/*; the bucket is this deployment's own",
            applies_to=resource_finding(self, statements[0].resources[0]),
        )
        worker.role.add_to_policy(
            iam.PolicyStatement(sid="CountJobs", actions=["dynamodb:UpdateItem"], resources=[self.table.attr_arn])
        )
        self._grant_listed_reads(worker.role, objects=True, listing=False)
        return worker

    def _grant_listed_reads(self, role: iam.IRole, *, objects: bool, listing: bool) -> None:
        """Read (and for the state machine, list) the buckets the deployer listed in ``s3_read_buckets``."""
        buckets = self.config.s3_read_buckets
        if not buckets:
            return
        if objects:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadListedBuckets", actions=["s3:GetObject"], resources=[s3_objects_arn(b) for b in buckets]
                )
            )
            for bucket in buckets:
                acknowledge(
                    role,
                    "AwsSolutions-IAM5",
                    f"the deployer listed bucket {bucket} in s3_read_buckets: imports read any object in it",
                    applies_to=resource_finding(self, s3_objects_arn(bucket)),
                )
        if listing:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ListListedBuckets",
                    actions=["s3:ListBucket"],
                    resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}" for bucket in buckets],
                )
            )

    def _state_machine(self) -> sfn.CfnStateMachine:
        role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Runs the bulk import state machine",
        )
        name = f"{self.config.stack_name}-imports"
        machine_arn = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{name}"
        # Map Runs' child executions: execution:<machine>/<map run>:<child>; AWS's Distributed Map policy
        # example (and CDK's DistributedMap) also grants execution:<machine>:*.
        executions = [
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}/*",
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*",
        ]
        statements = [
            iam.PolicyStatement(
                sid="InvokeWorker", actions=["lambda:InvokeFunction"], resources=[self.worker.function.function_arn]
            ),
            # A Distributed Map runs its batches as child executions of its own state machine.
            iam.PolicyStatement(sid="RunChildExecutions", actions=["states:StartExecution"], resources=[machine_arn]),
            iam.PolicyStatement(
                sid="ManageChildExecutions",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=executions,
            ),
            iam.PolicyStatement(
                sid="WriteResults",
                actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[self.results.arn_for_objects("*")],
            ),
            iam.PolicyStatement(sid="ListResults", actions=["s3:ListBucket"], resources=[self.results.bucket_arn]),
            iam.PolicyStatement(
                sid="StateMachineLogDelivery",
                actions=[
                    "logs:CreateLogDelivery",
                    "logs:GetLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeLogGroups",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="StateMachineTracing",
                actions=[
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                resources=["*"],
            ),
        ]
        for statement in statements:
            role.add_to_policy(statement)
        self._grant_listed_reads(role, objects=True, listing=True)
        for resource, reason in (
            ("*", "Step Functions' log delivery and X-Ray calls take no resource ARN: IAM accepts only *"),
            *(
                (arn, "a Distributed Map's child executions are named at run time under this state machine")
                for arn in executions
            ),
            (
                self.results.arn_for_objects("*"),
                "the ResultWriter names its objects at run time, in this stack's bucket",
            ),
        ):
            acknowledge(role, "AwsSolutions-IAM5", reason, applies_to=resource_finding(self, resource))
        machine = sfn.CfnStateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            role_arn=role.role_arn,
            definition_string=json.dumps(state_machine_definition(), indent=1),
            definition_substitutions={
                "WorkerArn": self.worker.function.function_arn,
                "ResultsBucket": self.results.bucket_name,
                "MaxConcurrency": self.input("MaxConcurrency"),
                "Partition": Aws.PARTITION,
            },
            logging_configuration=sfn.CfnStateMachine.LoggingConfigurationProperty(
                level="ALL",
                include_execution_data=False,
                destinations=[
                    sfn.CfnStateMachine.LogDestinationProperty(
                        cloud_watch_logs_log_group=sfn.CfnStateMachine.CloudWatchLogsLogGroupProperty(
                            log_group_arn=log_group_arn(self.input("StateMachineLogGroupName")) + ":*"
                        )
                    )
                ],
            ),
            tracing_configuration=sfn.CfnStateMachine.TracingConfigurationProperty(enabled=True),
        )
        # The first execution needs the role's policy; the role itself is a dependency through its ARN (cfn-lint W3005).
        policy = cast(CfnResource, role.node.find_child("DefaultPolicy").node.default_child)
        machine.add_override("DependsOn", [policy.logical_id])
        return machine

    def _api_policy(self) -> iam.ManagedPolicy:
        """What the API function calls for imports; its role attaches this policy (see the backend stack)."""
        name = self.state_machine.state_machine_name
        executions = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
        policy = iam.ManagedPolicy(
            self,
            "ApiImportAccess",
            description="Lets the Image Similarity API start, follow and cancel bulk imports",
            statements=[
                iam.PolicyStatement(
                    sid="StartImports", actions=["states:StartExecution"], resources=[self.state_machine.attr_arn]
                ),
                iam.PolicyStatement(
                    sid="FollowImports",
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[executions],
                ),
                iam.PolicyStatement(
                    sid="ImportRecords",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"],
                    resources=[self.table.attr_arn],
                ),
                iam.PolicyStatement(
                    sid="ImportResults",
                    actions=["s3:PutObject", "s3:GetObject"],
                    resources=[self.results.arn_for_objects("imports/*")],
                ),
                iam.PolicyStatement(
                    sid="ListImportResults", actions=["s3:ListBucket"], resources=[self.results.bucket_arn]
                ),
            ],
        )
        for resource, reason in (
            (executions, "executions are named by import at run time, under this stack's state machine"),
            (
                self.results.arn_for_objects("imports/*"),
                "each import's results are objects under imports/ in this stack's bucket",
            ),
        ):
            acknowledge(policy, "AwsSolutions-IAM5", reason, applies_to=resource_finding(self, resource))
        return policy
