"""The AWS import worker on realistic Distributed Map batch events, against moto (S3, S3 Vectors with the
store tests' fake for QueryVectors, DynamoDB) through real botocore clients, with the tiny model."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.config import Config

from runtime.libraries.aws.s3vectors import S3VectorsStore
from runtime.libraries.imports.aws import JobTable
from runtime.libraries.imports.sources import bounded_manifest
from runtime.libraries.imports.worker import ImportStopped, StoreBusy, Worker
from tests.fakes.s3vectors import FakeS3Vectors, error
from tests.runtime.libraries.imports.conftest import JOBS, PHOTOS
from tests.runtime.libraries.test_stores import BUCKET as VECTOR_BUCKET
from tests.runtime.libraries.test_stores import REGION, TABLE


def make_worker(tiny_settings, tiny_engine, vectors, dynamodb) -> Worker:
    settings = tiny_settings.replace(
        store="s3vectors", vector_bucket=VECTOR_BUCKET, registry_table=TABLE, s3_allowed_buckets=(PHOTOS,)
    )
    store = S3VectorsStore(settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb)
    return Worker(settings, tiny_engine, store, JobTable(JOBS, dynamodb))


def listed(s3, prefix: str) -> list[dict]:
    """The items as Step Functions' S3 ItemReader gives them (ListObjectsV2 entries)."""
    objects = s3.list_objects_v2(Bucket=PHOTOS, Prefix=prefix)["Contents"]
    return [
        {"Key": o["Key"], "Size": o["Size"], "ETag": o["ETag"], "LastModified": str(o["LastModified"])} for o in objects
    ]


def batch_input(**extra) -> dict:
    return {"import_id": "job1", "library": "products", "dedup": False, "threshold": None, **extra}


def test_a_prefix_batch_is_embedded_written_and_counted(moto_aws, tiny_settings, tiny_engine):
    vectors, dynamodb, fake, s3 = moto_aws
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    event = {"Items": listed(s3, "2025/"), "BatchInput": batch_input(kind="prefix", bucket=PHOTOS, prefix="2025/")}

    answer = worker.handle(event)

    assert {k: v for k, v in answer.items() if k not in ("import_id", "failures")} == {
        "processed": 8,  # the object that is not an image name is counted, as ignored
        "added": 6,
        "duplicates_exact": 0,
        "duplicates_copy": 0,
        "duplicates_similar": 0,
        "already_present": 0,
        "ignored_not_an_image_name": 1,
        "ignored_hidden_file": 0,
        "ignored_not_a_regular_file": 0,
        "ignored_link_outside_folder": 0,
        "failed": 1,
    }
    assert answer["failures"] == [
        {
            "item": "broken.jpg",
            "field": "url",
            "code": "url_not_image",
            "message": "url: the URL's content is not an image",
        }
    ]
    # One write for the batch into the library's index, one into its index of file hashes.
    puts = [put for put in fake.operations("PutVectors") if not put["indexName"].endswith("-files")]
    assert len(puts) == 1 and len(puts[0]["vectors"]) == 6
    assert worker.importer.store.get_image("products", "shoes:p1.png").id == "shoes:p1.png"
    record = dynamodb.get_item(TableName=JOBS, Key={"import_id": {"S": "job1"}})["Item"]
    assert (record["added"]["N"], record["failed"]["N"], record["processed"]["N"]) == ("6", "1", "8")

    again = worker.handle(event)  # a retried batch: nothing is written twice
    assert (again["added"], again["already_present"]) == (0, 6)
    assert len([put for put in fake.operations("PutVectors") if not put["indexName"].endswith("-files")]) == 1
    assert worker.importer.store.get_library("products").image_count == 6


def test_imports_apply_the_same_image_limits_as_requests(moto_aws, tiny_settings, tiny_engine):
    vectors, dynamodb, _, s3 = moto_aws
    worker = make_worker(tiny_settings.replace(max_image_pixels=3000), tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    event = {"Items": listed(s3, "2025/"), "BatchInput": batch_input(kind="prefix", bucket=PHOTOS, prefix="2025/")}

    answer = worker.handle(event)

    assert (answer["added"], answer["failed"]) == (0, 7)  # every picture is 64x48: 3,072 pixels
    too_large = [failure for failure in answer["failures"] if failure["code"] == "image_too_large"]
    assert len(too_large) == 6 and "setting max_image_pixels" in too_large[0]["message"]


def test_a_manifest_batch_names_each_bad_line(moto_aws, tiny_settings, tiny_engine):
    vectors, dynamodb, _, _ = moto_aws
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    items = [
        {"url": f"s3://{PHOTOS}/2025/bags/p0.png", "id": "sku-1", "metadata": {"price": 12}},
        {"url": f"s3://{PHOTOS}/2025/missing.png", "id": "sku-2"},
        {"url": "s3://someone-elses-bucket/a.png", "id": "sku-3"},
        {"url": f"s3://{PHOTOS}/2025/shoes/p1.png"},  # no id: named by its content hash
        {"id": "sku-5"},
    ]
    answer = worker.handle({"Items": items, "BatchInput": batch_input(kind="manifest")})
    assert answer["added"] == 2 and answer["failed"] == 3
    codes = {failure["item"]: failure["code"] for failure in answer["failures"]}
    assert codes == {"sku-2": "s3_not_found", "sku-3": "url_refused", "line 5": "missing_input"}
    assert worker.importer.store.get_image("products", "sku-1").metadata == {"price": 12}


def test_an_over_long_manifest_line_is_that_items_failure(moto_aws, tiny_settings, tiny_engine):
    vectors, dynamodb, _, _ = moto_aws
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    items = [
        {"url": f"s3://{PHOTOS}/2025/bags/p0.png", "id": "sku-1"},
        {"url": f"s3://{PHOTOS}/2025/shoes/p1.png", "id": "sku-2", "metadata": {"notes": "x" * 70_000}},
    ]
    answer = worker.handle({"Items": items, "BatchInput": batch_input(kind="manifest")})
    assert (answer["added"], answer["failed"]) == (1, 1)
    (failure,) = answer["failures"]
    assert failure["code"] == "json_too_large" and "over a manifest line's 65,536" in failure["message"]


def test_an_https_manifests_over_long_line_reaches_the_worker_as_its_length(moto_aws, tiny_settings, tiny_engine):
    """The API copies an https manifest into S3 for the ItemReader with over-long lines cut to their length."""
    vectors, dynamodb, _, _ = moto_aws
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    good = json.dumps({"url": f"s3://{PHOTOS}/2025/bags/p0.png", "id": "sku-1"}).encode()
    long = json.dumps({"url": f"s3://{PHOTOS}/2025/shoes/p1.png", "metadata": {"n": "x" * 300_000}}).encode()
    copied_file = io.BytesIO()
    bounded_manifest(io.BytesIO(b"\n".join([good, long])), copied_file)
    copied = copied_file.getvalue()
    assert len(copied) < 1000
    items = [json.loads(line) for line in copied.splitlines()]
    answer = worker.handle({"Items": items, "BatchInput": batch_input(kind="manifest")})
    assert (answer["added"], answer["failed"]) == (1, 1)
    assert (
        answer["failures"][0]["code"] == "json_too_large" and f"{len(long):,} bytes" in answer["failures"][0]["message"]
    )


def test_a_missing_library_stops_the_import(moto_aws, tiny_settings, tiny_engine):
    vectors, dynamodb, _, s3 = moto_aws
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    event = {"Items": listed(s3, "2025/bags/"), "BatchInput": batch_input(kind="prefix", bucket=PHOTOS, prefix="2025/")}
    with pytest.raises(ImportStopped, match="library 'products' does not exist"):
        worker.handle(event)


def worker_whose_puts_fail(moto_aws, tiny_settings, tiny_engine, code: str, status: int) -> Worker:
    _, dynamodb, _, _ = moto_aws
    vectors = boto3.client("s3vectors", region_name=REGION, config=Config(retries={"max_attempts": 1}))
    FakeS3Vectors(vectors)
    vectors.meta.events.register(
        "before-call.s3vectors.PutVectors", lambda **_: error(f"{code} (as the service says it)", code, status)
    )
    worker = make_worker(tiny_settings, tiny_engine, vectors, dynamodb)
    worker.importer.store.create_library("products", tiny_engine.model_version)
    return worker


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("ServiceUnavailableException", 503), ("RequestTimeoutException", 408)],
)
def test_throttling_that_outlasts_the_client_retries_makes_the_batch_retryable(
    moto_aws, tiny_settings, tiny_engine, code, status
):
    worker = worker_whose_puts_fail(moto_aws, tiny_settings, tiny_engine, code, status)
    event = {
        "Items": listed(moto_aws[3], "2025/bags/"),
        "BatchInput": batch_input(kind="prefix", bucket=PHOTOS, prefix="2025/"),
    }
    with pytest.raises(StoreBusy, match=code):
        worker.handle(event)


@pytest.mark.parametrize(("code", "status"), [("AccessDeniedException", 403), ("ValidationException", 400)])
def test_a_permanent_store_fault_fails_the_batchs_items_with_its_code_and_is_not_retried(
    moto_aws, tiny_settings, tiny_engine, code, status
):
    worker = worker_whose_puts_fail(moto_aws, tiny_settings, tiny_engine, code, status)
    items = listed(moto_aws[3], "2025/bags/")
    event = {"Items": items, "BatchInput": batch_input(kind="prefix", bucket=PHOTOS, prefix="2025/")}
    answer = worker.handle(event)  # no exception: Step Functions would retry it six times for nothing
    assert (answer["added"], answer["failed"], answer["processed"]) == (0, len(items), len(items))
    assert {failure["code"] for failure in answer["failures"]} == {"store_error"}
    assert all(code in failure["message"] for failure in answer["failures"])
