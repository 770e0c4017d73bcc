"""Library storage nested stack: one S3 Vectors vector bucket (one index per library, made by the
runtime), a DynamoDB registry of the libraries (name, model version, count, create time) and the
bulk imports' results bucket.

Not conditional on the ``Libraries`` parameter: ``Libraries=no`` takes the routes and grants away, and
``yes`` finds the same bucket, table and libraries again (an empty vector bucket, an on-demand table
and an empty bucket cost nothing). A template synthesized with ``-c libraries=false`` (a Region without
S3 Vectors) makes the stack conditional on ``Libraries=yes`` instead. All three are retained when the
stack goes: they hold the users' libraries and the import results.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from infra.nag import acknowledge
from infra.nested import ParameterizedNestedStack

IMPORT_RESULTS_DAYS = 30


def keyed_table(scope: Construct, construct_id: str, *, key: str) -> dynamodb.CfnTable:
    """A DynamoDB table of records keyed by one string attribute: on-demand, point-in-time recovery on."""
    return dynamodb.CfnTable(
        scope,
        construct_id,
        key_schema=[dynamodb.CfnTable.KeySchemaProperty(attribute_name=key, key_type="HASH")],
        attribute_definitions=[dynamodb.CfnTable.AttributeDefinitionProperty(attribute_name=key, attribute_type="S")],
        billing_mode="PAY_PER_REQUEST",
        point_in_time_recovery_specification=dynamodb.CfnTable.PointInTimeRecoverySpecificationProperty(
            point_in_time_recovery_enabled=True
        ),
    )


class StorageStack(ParameterizedNestedStack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Image Similarity: image libraries (S3 Vectors + DynamoDB registry)",
            **kwargs,
        )
        # No fixed name: a retained bucket must not block making a new one after the feature is
        # switched off and on again.
        bucket = s3vectors.CfnVectorBucket(self, "VectorBucket")
        bucket.apply_removal_policy(RemovalPolicy.RETAIN)
        self.vector_bucket_arn = bucket.attr_vector_bucket_arn
        # The ARN ends in ":bucket/<name>"; the runtime's calls take the name.
        self.vector_bucket_name = Fn.select(1, Fn.split(":bucket/", bucket.attr_vector_bucket_arn))

        table = keyed_table(self, "RegistryTable", key="name")
        table.apply_removal_policy(RemovalPolicy.RETAIN)
        self.registry_table_name = table.ref
        self.registry_table_arn = table.attr_arn
        self.import_results_bucket_name = self._import_results_bucket().bucket_name

    def _import_results_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "ImportResults",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(IMPORT_RESULTS_DAYS))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "holds only the import results the state machine writes, kept 30 days; its reads and writes are "
            "the state machine's and the API's own, which CloudTrail and the execution history record",
        )
        return bucket
