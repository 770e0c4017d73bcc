"""s3:// inputs, read through boto3 from moto's S3 server on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer


@pytest.fixture(scope="module")
def s3_server(monkeypatch_module):
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch_module.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="cats/a.png", Body=image_bytes(1))
    s3.put_object(Bucket="photos", Key="notes.txt", Body=b"hello")
    s3.create_bucket(Bucket="other")
    s3.put_object(Bucket="other", Key="b.png", Body=image_bytes(2))
    yield endpoint
    moto.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def s3_api(s3_server, tiny_settings, tiny_engine):
    with LiveServer.start(tiny_settings.replace(s3_allowed_buckets=("photos",)), tiny_engine) as live:
        yield live


def test_s3_url_gives_the_same_vector_as_the_bytes(s3_api):
    by_s3 = s3_api.post("/image-similarity", {"url": "s3://photos/cats/a.png"})
    by_img = s3_api.post("/image-similarity", {"img": b64(image_bytes(1))})
    assert by_s3.status_code == 200, by_s3.text
    assert np.allclose(by_s3.json()["result"], by_img.json()["result"], atol=1e-6)


@pytest.mark.parametrize(
    "url,code",
    [
        ("s3://photos/cats/missing.png", "s3_not_found"),
        ("s3://no-such-bucket-here/a.png", "url_refused"),  # not on the allowed list
        ("s3://photos/notes.txt", "url_not_image"),
        ("s3://other/b.png", "url_refused"),
    ],
)
def test_s3_failures_are_4xx(s3_api, url, code):
    response = s3_api.post("/image-similarity", {"url_2": url, "text_1": "x"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert response.json()["message"].startswith("url_2")


def test_missing_bucket_without_allow_list_is_not_found(s3_server, tiny_settings, tiny_engine):
    with LiveServer.start(tiny_settings, tiny_engine) as live:
        response = live.post("/image-similarity", {"url": "s3://no-such-bucket-here/a.png"})
    assert response.json()["code"] == "s3_not_found"


def test_access_denied_is_reported(s3_server, tiny_settings, tiny_engine, monkeypatch):
    """moto enforces a bucket policy that denies this caller: the answer says access is denied."""
    import json

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="locked")
    s3.put_object(Bucket="locked", Key="a.png", Body=image_bytes(1))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::locked/*"}
        ],
    }
    s3.put_bucket_policy(Bucket="locked", Policy=json.dumps(policy))
    with LiveServer.start(tiny_settings, tiny_engine) as live:
        response = live.post("/image-similarity", {"url": "s3://locked/a.png"})
    assert response.status_code == 400
    assert response.json()["code"] == "s3_access_denied", response.json()
