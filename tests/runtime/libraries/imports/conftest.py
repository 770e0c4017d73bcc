"""Shared by the import tests: moto's S3 server on loopback with a bucket of pictures, and a wait helper."""

from __future__ import annotations

import time

import boto3
import pytest

from tests.fakes.images import image_bytes
from tests.runtime.libraries.test_stores import REGION, aws  # noqa: F401 (the fixture, used by moto_aws)

BUCKET = "photos"
JOBS = "imsim-test-imports"
PHOTOS = "catalog-photos"
IMAGES = 20


def catalog_objects() -> dict[str, bytes]:
    """20 distinct pictures in two folders, a note, a "JPEG" that is text, and an exact copy of one picture."""
    objects = {f"catalog/{'shoes' if n % 2 else 'bags'}/p{n:02d}.png": image_bytes(n) for n in range(IMAGES)}
    objects["catalog/README.txt"] = b"not an image, ignored"
    objects["catalog/broken.jpg"] = b"this is text, not a JPEG"
    objects["catalog/zcopy/p00.png"] = image_bytes(0)  # same bytes as catalog/bags/p00.png
    return objects


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 as a real server; boto3 in this process (and in child processes) reaches it."""
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    before = os.environ.get("AWS_ENDPOINT_URL_S3")
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for key, body in catalog_objects().items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.create_bucket(Bucket="elsewhere")
    yield endpoint
    if before is None:
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    else:
        os.environ["AWS_ENDPOINT_URL_S3"] = before
    moto.stop()


def wait_for_end(client, library: str, import_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/libraries/{library}/imports/{import_id}").json()
        if job.get("status") != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


@pytest.fixture
def moto_aws(request, monkeypatch):
    """moto in process (the store tests' ``aws`` fixture), a bucket of pictures and the job table."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    vectors, dynamodb, fake = request.getfixturevalue("aws")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=PHOTOS)
    for n in range(6):
        s3.put_object(Bucket=PHOTOS, Key=f"2025/{'shoes' if n % 2 else 'bags'}/p{n}.png", Body=image_bytes(n))
    s3.put_object(Bucket=PHOTOS, Key="2025/index.html", Body=b"<html>")
    s3.put_object(Bucket=PHOTOS, Key="2025/broken.jpg", Body=b"not a jpeg")
    dynamodb.create_table(
        TableName=JOBS,
        KeySchema=[{"AttributeName": "import_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "import_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return vectors, dynamodb, fake, s3
