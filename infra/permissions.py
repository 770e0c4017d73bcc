"""IAM statements, each scoped to the one resource it is for (partition-agnostic ARNs)."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

# Exactly what the runtime's S3 Vectors store calls (one index per library), and its registry table calls.
VECTOR_ACTIONS = [
    f"s3vectors:{action}"
    for action in (
        "CreateIndex",
        "UpdateIndexMode",
        "DeleteIndex",
        "PutVectors",
        "GetVectors",
        "DeleteVectors",
        "QueryVectors",
        "ListVectors",
    )
]
REGISTRY_ACTIONS = [f"dynamodb:{action}" for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Scan")]


def vector_bucket_arn(bucket_name: str) -> str:
    return f"arn:{Aws.PARTITION}:s3vectors:{Aws.REGION}:{Aws.ACCOUNT_ID}:bucket/{bucket_name}"


def library_statements(bucket_name: str, table_arn: str) -> list[iam.PolicyStatement]:
    # Every one of these actions applies to an index (IAM's authorization data for S3 Vectors): none
    # needs the bucket's own ARN (tests/infra/test_iam_contracts.py).
    return [
        iam.PolicyStatement(
            sid="LibraryVectors", actions=VECTOR_ACTIONS, resources=[f"{vector_bucket_arn(bucket_name)}/index/*"]
        ),
        iam.PolicyStatement(sid="LibraryRegistry", actions=REGISTRY_ACTIONS, resources=[table_arn]),
    ]


def s3_read_statement(buckets: tuple[str, ...]) -> iam.PolicyStatement:
    """``s3://`` inputs: read objects in the buckets the deployer listed, nothing else."""
    return iam.PolicyStatement(
        sid="ReadListedBuckets", actions=["s3:GetObject"], resources=[s3_objects_arn(bucket) for bucket in buckets]
    )


def s3_objects_arn(bucket: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/*"


def log_group_arn(name: str) -> str:
    return f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{name}"


def log_write_statement(log_group_name: str) -> iam.PolicyStatement:
    """Write to one log group (its streams are named by the service, hence the ``:*``)."""
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[f"{log_group_arn(log_group_name)}:*"],
    )
