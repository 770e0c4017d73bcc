"""The API side of imports on AWS: POST starts a Step Functions execution and writes the job record,
GET reads it and the execution's state, DELETE stops it. Against moto (Step Functions, DynamoDB, S3,
S3 Vectors); moto does not run Distributed Maps, so the execution stays running until it is stopped."""

from __future__ import annotations

import json

import boto3
import pytest

from runtime.errors import ApiError
from runtime.libraries.aws.s3vectors import S3VectorsStore
from runtime.libraries.imports.aws import StepFunctionsImports
from runtime.settings import Settings
from tests.runtime.libraries.imports.conftest import JOBS, PHOTOS
from tests.runtime.libraries.test_stores import BUCKET, REGION, TABLE

RESULTS = "imsim-test-import-results"


@pytest.fixture
def imports(moto_aws):
    vectors, dynamodb, _, s3 = moto_aws
    s3.create_bucket(Bucket=RESULTS)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = "arn:aws:iam::123456789012:role/imports"
    machine = sfn.create_state_machine(
        name="imports",
        roleArn=role,
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    settings = Settings(
        store="s3vectors",
        vector_bucket=BUCKET,
        registry_table=TABLE,
        s3_allowed_buckets=(PHOTOS,),
        import_state_machine=machine,
        import_table=JOBS,
        import_results_bucket=RESULTS,
    )
    store = S3VectorsStore(settings, 16, s3vectors=vectors, dynamodb=dynamodb)
    store.create_library("products", "test-model/v1")
    service = StepFunctionsImports(settings, store, clients={"stepfunctions": sfn, "dynamodb": dynamodb, "s3": s3})
    return service, sfn


def test_post_starts_an_execution_named_by_the_import(imports):
    service, sfn = imports
    job = service.start("products", {"source": f"s3://{PHOTOS}/2025/"}, dedup=True, threshold=0.95)
    execution = sfn.describe_execution(executionArn=service.jobs.get("products", job.import_id)[1])
    assert execution["name"] == job.import_id
    assert json.loads(execution["input"]) == {
        "import_id": job.import_id,
        "library": "products",
        "dedup": True,
        "threshold": 0.95,
        "kind": "prefix",
        "bucket": PHOTOS,
        "prefix": "2025/",
    }
    assert job.results == f"s3://{RESULTS}/imports/{job.import_id}/"
    service.jobs.add_counts(job.import_id, {"processed": 5, "added": 4, "failed": 1})
    seen = service.get("products", job.import_id)
    assert seen.status == "running" and seen.counts["added"] == 4 and seen.counts["failed"] == 1
    assert [one.import_id for one in service.list_jobs("products")] == [job.import_id]


def test_delete_stops_the_execution(imports):
    service, _ = imports
    job = service.start("products", {"manifest": f"s3://{PHOTOS}/list.jsonl"}, dedup=False, threshold=None)
    assert service.cancel("products", job.import_id).status == "cancelled"
    assert service.get("products", job.import_id).status == "cancelled"
    with pytest.raises(ApiError) as finished:
        service.cancel("products", job.import_id)
    assert finished.value.code == "import_finished"


@pytest.mark.parametrize(
    "library,source,code",
    [
        ("products", {"source": "s3://not-listed/2025/"}, "url_refused"),
        ("products", {"manifest": "s3://not-listed/list.jsonl"}, "url_refused"),
        ("nowhere", {"source": f"s3://{PHOTOS}/2025/"}, "library_not_found"),
    ],
)
def test_refused_before_any_execution(imports, library, source, code):
    service, sfn = imports
    with pytest.raises(ApiError) as refused:
        service.start(library, source, dedup=True, threshold=None)
    assert refused.value.code == code
    machine = service.machine
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_with_no_bucket_listed_an_s3_source_is_refused(imports):
    service, sfn = imports
    service.settings = service.settings.replace(s3_allowed_buckets=())
    with pytest.raises(ApiError) as refused:
        service.start("products", {"source": f"s3://{PHOTOS}/2025/"}, dedup=True, threshold=None)
    assert refused.value.code == "url_refused" and "s3_read_buckets" in refused.value.message
    assert sfn.list_executions(stateMachineArn=service.machine)["executions"] == []
