"""Powertools output of the deployed handlers: every stdout line is a JSON log line or an EMF document.

Each handler runs in a fresh process, as Lambda runs it (the module loaded at init, then one call per
event, with a Lambda context), on API Gateway REST proxy events; the test reads what it printed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.images import b64, image_bytes
from tests.fakes.lambda_events import proxy_event
from tests.fakes.servers import FileServer, LiveServer, SageMakerRuntime

ROOT = Path(__file__).resolve().parents[2]

RUN_HANDLER = """
import importlib.util, json, sys

class Context:
    function_name = "image-similarity-api"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:image-similarity-api"
    log_group_name = "/aws/lambda/image-similarity-api"
    log_stream_name = "2026/12/01/[$LATEST]abc"

    def __init__(self, number):
        self.aws_request_id = f"lambda-request-{number}"

    def get_remaining_time_in_millis(self):
        return 28_000

spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
events = json.load(open(sys.argv[2]))
answers = [module.handler(event, Context(number)) for number, event in enumerate(events)]
json.dump(answers, open(sys.argv[3], "w"))
"""

SECRET_TEXT = "a photo of the secret cat"


@dataclass
class Run:
    answers: list[dict]
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def logs(self) -> list[dict]:
        return [line for line in self.lines if "_aws" not in line]

    @property
    def request_logs(self) -> list[dict]:
        return [line for line in self.logs if "route" in line]

    @property
    def emf(self) -> list[dict]:
        return [line for line in self.lines if "_aws" in line]

    def metric_values(self, name: str, dimensions: list[str]) -> list[tuple[dict, float]]:
        """Each document's value of ``name`` published with this dimension set, with its dimensions (Powertools
        writes a list of the invocation's values: a single one is unwrapped)."""
        found = []
        for document in self.emf:
            for directive in document["_aws"]["CloudWatchMetrics"]:
                names = [metric["Name"] for metric in directive["Metrics"]]
                if name in names and sorted(dimensions) in [sorted(d) for d in directive["Dimensions"]]:
                    value = document[name]
                    value = value[0] if isinstance(value, list) and len(value) == 1 else value
                    found.append(({key: document[key] for key in dimensions}, value))
        return found


def run_handler(handler: str, events: list[dict], env: dict[str, str], tmp_path: Path) -> Run:
    events_file, answers_file = tmp_path / "events.json", tmp_path / "answers.json"
    events_file.write_text(json.dumps(events))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("IMSIM_", "POWERTOOLS_"))}
    environment.update({"HF_HUB_OFFLINE": "1", "AWS_LAMBDA_FUNCTION_NAME": "image-similarity-api", **env})
    done = subprocess.run(
        [sys.executable, "-c", RUN_HANDLER, str(ROOT / "lambda_image" / handler), str(events_file), str(answers_file)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Run(json.loads(answers_file.read_text()), done.stdout, done.stderr)


IMAGE = b64(image_bytes(7, size=(64, 48), fmt="PNG"))
API_EVENTS = [
    ("/image-similarity", {"img": IMAGE}, 200, None),
    ("/image-similarity", {"inputs": [{"img": IMAGE}, {"text": SECRET_TEXT}, {"text": "a dog"}]}, 200, None),
    ("/image-similarity", {"img": "!!not base64!!"}, 400, "invalid_base64"),
    ("/image-similarity", {"url": "http://127.0.0.1:8080/cat.jpg"}, 400, "url_refused"),
    ("/libraries", {"name": "cats"}, 201, None),
    ("/libraries/cats/images", {"img": IMAGE, "id": "first"}, 200, None),
    ("/libraries/cats/images", {"img": IMAGE, "id": "again"}, None, None),  # the same image: a duplicate
    ("/no-such-route", {}, 404, "route_not_found"),
]
ROUTES = [path if path != "/libraries/cats/images" else "/libraries/{name}/images" for path, *_ in API_EVENTS]


@pytest.fixture(scope="module")
def api_run(tiny_settings, tmp_path_factory) -> Run:
    """lambda_image/handler.py with the tiny model, the local store, Powertools as deployed."""
    env = {
        "IMSIM_MODEL": tiny_settings.model,
        "IMSIM_PRETRAINED": tiny_settings.pretrained,
        "IMSIM_WEIGHTS": tiny_settings.weights,
        "IMSIM_MODEL_CONFIG_PATH": tiny_settings.model_config_path,
        "IMSIM_DATA_DIR": str(tmp_path_factory.mktemp("lambda-data")),
        "POWERTOOLS_SERVICE_NAME": "image-similarity",
        "POWERTOOLS_METRICS_NAMESPACE": "ImageSimilarity",
    }
    events = [proxy_event(path, body, request_id=f"apigw-{i}") for i, (path, body, *_) in enumerate(API_EVENTS)]
    return run_handler("handler.py", events, env, tmp_path_factory.mktemp("run"))


def test_every_stdout_line_is_json_and_the_answers_are_right(api_run):
    assert api_run.lines  # parses every line, or fails here
    for answer, (path, _, status, code) in zip(api_run.answers, API_EVENTS, strict=True):
        if status is not None:
            assert answer["statusCode"] == status, (path, answer)
        if code is not None:
            assert json.loads(answer["body"])["code"] == code


def test_one_request_line_per_event_with_the_invocation_context(api_run):
    lines = api_run.request_logs
    assert len(lines) == len(API_EVENTS)
    for number, (line, answer, route) in enumerate(zip(lines, api_run.answers, ROUTES, strict=True)):
        assert line["service"] == "image-similarity"
        assert line["function_name"] == "image-similarity-api"
        assert line["function_request_id"] == f"lambda-request-{number}"
        assert line["correlation_id"] == line["request_id"] == f"apigw-{number}"  # API Gateway's request id
        assert line["cold_start"] is (number == 0)
        assert line["route"] == (route if route != "/no-such-route" else "unmatched")
        assert line["method"] == "POST"
        assert line["status"] == answer["statusCode"]
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
        expected_code = json.loads(answer["body"]).get("code") if answer["statusCode"] >= 400 else None
        assert line.get("code") == expected_code
        assert line["level"] == "INFO"


def test_logs_hold_no_body_no_image_no_text(api_run):
    output = api_run.stdout + api_run.stderr
    assert IMAGE[:40] not in output and IMAGE[-40:] not in output
    assert SECRET_TEXT not in output
    assert "!!not base64!!" not in output
    assert "cat.jpg" not in output  # nor a URL from a body


def test_requests_by_route_and_outcome(api_run):
    outcomes = api_run.metric_values("Requests", ["service", "route", "outcome"])
    expected = []
    for answer, route in zip(api_run.answers, ROUTES, strict=True):
        body = json.loads(answer["body"])
        outcome = body["code"] if answer["statusCode"] >= 400 else "ok"
        route = route.replace("/no-such-route", "unmatched")
        expected.append(({"service": "image-similarity", "route": route, "outcome": outcome}, 1))
    assert outcomes == expected
    assert {d["outcome"] for d, _ in outcomes} >= {"ok", "invalid_base64", "url_refused", "route_not_found"}


def test_latency_and_error_rates_by_route_and_for_the_service(api_run):
    for dimensions in (["service", "route"], ["service"]):
        latency = api_run.metric_values("Latency", dimensions)
        assert len(latency) == len(API_EVENTS) and all(value > 0 for _, value in latency)
        url_failures = [value for _, value in api_run.metric_values("UrlFailures", dimensions)]
        assert url_failures == [1 if code == "url_refused" else 0 for *_, code in API_EVENTS]
        server_errors = [value for _, value in api_run.metric_values("ServerErrors", dimensions)]
        assert server_errors == [0] * len(API_EVENTS)
    units = {m["Name"]: m["Unit"] for d in api_run.emf for c in d["_aws"]["CloudWatchMetrics"] for m in c["Metrics"]}
    assert units["Latency"] == "Milliseconds" and units["Requests"] == "Count"
    assert {c["Namespace"] for d in api_run.emf for c in d["_aws"]["CloudWatchMetrics"]} == {"ImageSimilarity"}


def test_embedding_work_and_library_outcomes_are_counted_per_invocation(api_run):
    # One value per invocation that embedded or added (a ping or an error before the model adds none).
    images = api_run.metric_values("ImagesEmbedded", ["service"])
    texts = api_run.metric_values("TextsEmbedded", ["service"])
    batch = api_run.metric_values("BatchSize", ["service"])
    assert [v for _, v in images] == [1, 1, 1]  # single, batch, first add (the second, an exact copy, skips the model)
    assert [v for _, v in texts] == [0, 2, 0]
    assert [v for _, v in batch] == [1, 3, 1]
    assert [v for _, v in api_run.metric_values("ImagesAdded", ["service"])] == [1, 0]
    assert [v for _, v in api_run.metric_values("ExactDuplicatesRefused", ["service"])] == [0, 1]
    assert [v for _, v in api_run.metric_values("DuplicatesRefused", ["service"])] == [0, 0]


def test_cold_start_metric_once(api_run):
    cold = api_run.metric_values("ColdStart", ["service", "function_name"])
    assert cold == [({"service": "image-similarity", "function_name": "image-similarity-api"}, 1)]


@pytest.fixture(scope="module")
def explorer_run(tmp_path_factory) -> Run:
    events = [
        proxy_event("/api-explorer", None, method="GET", request_id="apigw-page"),
        proxy_event("/ping", None, method="GET", request_id="apigw-ping"),
    ]
    env = {"IMSIM_AUTH": "NONE"}  # as the explorer function is deployed: no engine, no store
    return run_handler("explorer_handler.py", events, env, tmp_path_factory.mktemp("explorer"))


def test_explorer_handler_logs_and_counts_its_requests(explorer_run):
    page, ping = explorer_run.answers
    assert page["statusCode"] == 200 and ping["statusCode"] == 503
    lines = explorer_run.request_logs
    assert [(line["route"], line["status"], line.get("code")) for line in lines] == [
        ("/api-explorer", 200, None),
        ("/ping", 503, "model_not_served"),
    ]
    assert lines[1]["level"] == "ERROR" and lines[1]["correlation_id"] == "apigw-ping"
    assert [v for _, v in explorer_run.metric_values("ServerErrors", ["service", "route"])] == [0, 1]
    assert "<html" not in explorer_run.stdout.lower()  # the page itself is never logged


class XRayDaemon:
    """A UDP socket on loopback where the X-Ray SDK sends its segments, as it sends them to the daemon."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def documents(self) -> list[dict]:
        """Every document received until a second passes with none; then the socket is closed."""
        received = []
        while True:
            try:
                packet = self.sock.recv(65536).decode()
            except TimeoutError:
                self.sock.close()
                return received
            header, body = packet.split("\n", 1)
            assert json.loads(header) == {"format": "json", "version": 1}
            received.append(json.loads(body))


TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.mark.slow
def test_active_tracing_sends_fetch_decode_embed_and_store_subsegments(tiny_settings, tmp_path):
    """Lambda's environment with active tracing: the real X-Ray SDK sends to a loopback "daemon"."""
    files = FileServer({"/cat.png": (200, {"Content-Type": "image/png"}, image_bytes(5, fmt="PNG"))})
    daemon = XRayDaemon()
    env = {
        "IMSIM_MODEL": tiny_settings.model,
        "IMSIM_PRETRAINED": tiny_settings.pretrained,
        "IMSIM_WEIGHTS": tiny_settings.weights,
        "IMSIM_MODEL_CONFIG_PATH": tiny_settings.model_config_path,
        "IMSIM_DATA_DIR": str(tmp_path / "data"),
        "IMSIM_FETCH_ALLOW_NETWORKS": "127.0.0.1/32",
        "LAMBDA_TASK_ROOT": str(ROOT / "lambda_image"),
        "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
    }
    events = [
        proxy_event("/libraries", {"name": "dogs"}, request_id="apigw-0"),
        proxy_event("/libraries/dogs/images", {"url": files.base + "/cat.png"}, request_id="apigw-0"),
        proxy_event("/libraries/dogs/search", {"text": SECRET_TEXT}, request_id="apigw-0"),
    ]
    try:
        run = run_handler("handler.py", events, env, tmp_path)
    finally:
        files.close()
    assert [answer["statusCode"] for answer in run.answers] == [201, 200, 200]
    documents = daemon.documents()
    assert documents and {document["trace_id"] for document in documents} == {TRACE_ID}
    names = [document["name"] for document in documents]
    for name in ("## fetch", "## decode", "## embed", "## store", "## lambda_handler"):
        assert name in names, names
    assert names.count("## store") == 2  # the add and the search
    sent = json.dumps(documents)
    assert files.base not in sent and SECRET_TEXT not in sent  # no input in a trace, nor an answer
    assert all(line["xray_trace_id"] == TRACE_ID for line in run.request_logs)


@pytest.mark.slow
def test_front_handler_on_the_sagemaker_engine_logs_and_counts_like_the_lambda_backend(
    tiny_settings, tiny_engine, tmp_path
):
    """The SageMaker backend's front function (handler.py, sagemaker engine, no model), its endpoint
    a real container behind a loopback SageMaker Runtime."""
    with LiveServer.start(tiny_settings, tiny_engine, sagemaker=True) as container:
        runtime = SageMakerRuntime(container.url)
        env = {
            "IMSIM_ENGINE": "sagemaker",
            "IMSIM_SAGEMAKER_ENDPOINT": "image-similarity-endpoint",
            "IMSIM_IMAGE_SIZE": str(tiny_engine.image_size),
            "IMSIM_MODEL": tiny_settings.model,
            "IMSIM_PRETRAINED": tiny_settings.pretrained,
            "IMSIM_STORE": "off",
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        events = [
            proxy_event("/image-similarity", {"img_1": IMAGE, "text_2": SECRET_TEXT}, request_id="apigw-pair"),
            proxy_event("/image-similarity", {"img": "!!"}, request_id="apigw-bad"),
        ]
        try:
            run = run_handler("handler.py", events, env, tmp_path)
        finally:
            runtime.close()
    assert [answer["statusCode"] for answer in run.answers] == [200, 400]
    assert runtime.endpoints == ["image-similarity-endpoint", "image-similarity-endpoint"]  # images, then texts
    assert [(line["route"], line["status"], line.get("code"), line["correlation_id"]) for line in run.request_logs] == [
        ("/image-similarity", 200, None, "apigw-pair"),
        ("/image-similarity", 400, "invalid_base64", "apigw-bad"),
    ]
    assert [v for _, v in run.metric_values("ImagesEmbedded", ["service"])] == [1]
    assert [v for _, v in run.metric_values("TextsEmbedded", ["service"])] == [1]
    outcomes = [d["outcome"] for d, _ in run.metric_values("Requests", ["service", "route", "outcome"])]
    assert outcomes == ["ok", "invalid_base64"]
    assert IMAGE[:40] not in run.stdout + run.stderr and SECRET_TEXT not in run.stdout + run.stderr


# --- the import worker's function ------------------------------------------------------------------

PHOTO_BUCKET, VECTOR_BUCKET, REGISTRY, JOBS = "catalog-photos", "imsim-vectors", "imsim-registry", "imsim-imports"


def batch_event(execution_input: dict, objects: list[dict]) -> dict:
    """The event the prefix map's ItemBatcher sends: its BatchInput resolved from the synthesized ASL
    against the execution's input, and the ListObjectsV2 entries of the batch."""
    from infra.imports_stack import state_machine_definition

    template = state_machine_definition()["States"]["ImportPrefix"]["ItemBatcher"]["BatchInput"]
    resolved = {}
    for key, path in template.items():
        assert key.endswith(".$") and path.startswith("$.job."), (key, path)
        resolved[key[: -len(".$")]] = execution_input[path[len("$.job.") :]]
    return {"Items": objects, "BatchInput": resolved}


@pytest.mark.slow
def test_the_import_worker_publishes_its_progress_and_adds(tiny_settings, tiny_engine, tmp_path):
    """lambda_image/import_handler.py in its own process, on a Distributed Map batch event, against
    moto's server (S3, S3 Vectors, DynamoDB) on loopback: the import metrics the dashboard plots are
    in its EMF output, beside the library add outcomes."""
    import boto3
    from moto.server import ThreadedMotoServer

    from runtime.libraries.aws.s3vectors import S3VectorsStore
    from runtime.settings import env_name
    from tests.fakes.s3vectors import FakeS3Vectors

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        aws = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        clients = {
            name: boto3.client(
                name,
                endpoint_url=aws["AWS_ENDPOINT_URL"],
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            for name in ("s3", "s3vectors", "dynamodb")
        }
        clients["s3"].create_bucket(Bucket=PHOTO_BUCKET)
        files = {f"2026/p{n}.png": image_bytes(n) for n in range(4)}
        files |= {"2026/copy-of-p0.png": image_bytes(0), "2026/broken.jpg": b"not a jpeg"}
        for key, body in files.items():
            clients["s3"].put_object(Bucket=PHOTO_BUCKET, Key=key, Body=body)
        FakeS3Vectors(clients["s3vectors"])  # what moto lacks (UpdateIndexMode), for the library's creation here
        clients["s3vectors"].create_vector_bucket(vectorBucketName=VECTOR_BUCKET)
        for table, key in ((REGISTRY, "name"), (JOBS, "import_id")):
            clients["dynamodb"].create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        settings = tiny_settings.replace(
            store="s3vectors",
            vector_bucket=VECTOR_BUCKET,
            registry_table=REGISTRY,
            import_table=JOBS,
            s3_allowed_buckets=(PHOTO_BUCKET,),
        )
        store = S3VectorsStore(
            settings, tiny_engine.dimension, s3vectors=clients["s3vectors"], dynamodb=clients["dynamodb"]
        )
        store.create_library("catalog", tiny_engine.model_version)
        listed = clients["s3"].list_objects_v2(Bucket=PHOTO_BUCKET, Prefix="2026/")["Contents"]
        objects = [{"Key": o["Key"], "Size": o["Size"], "ETag": o["ETag"]} for o in listed]
        execution_input = {"import_id": "job1", "library": "catalog", "dedup": False, "threshold": None}
        execution_input |= {"kind": "prefix", "bucket": PHOTO_BUCKET, "prefix": "2026/"}
        env = {
            **aws,
            **{
                env_name(field): str(getattr(settings, field))
                for field in ("model", "pretrained", "weights", "model_config_path", "store", "vector_bucket")
            },
            **{env_name(field): str(getattr(settings, field)) for field in ("registry_table", "import_table")},
            env_name("s3_allowed_buckets"): PHOTO_BUCKET,
            "POWERTOOLS_SERVICE_NAME": "image-similarity",
            "POWERTOOLS_METRICS_NAMESPACE": "ImageSimilarity",
        }
        run = run_handler("import_handler.py", [batch_event(execution_input, objects)], env, tmp_path)
        stored = {image.id for image in store.list_images("catalog", limit=100).images}
        job = clients["dynamodb"].get_item(TableName=JOBS, Key={"import_id": {"S": "job1"}})["Item"]
    finally:
        moto.stop()

    (answer,) = run.answers
    # dedup off (the worker's near-duplicate check is QueryVectors, which moto's server lacks): the copy is
    # added as the API adds it; broken.jpg fails.
    assert stored == {"p0.png", "p1.png", "p2.png", "p3.png", "copy-of-p0.png"}
    assert (answer["added"], answer["failed"]) == (5, 1)
    assert job["added"] == {"N": "5"} and job["failed"] == {"N": "1"}
    progress = {
        name: [value for _, value in run.metric_values(name, ["service"])]
        for name in ("ImportedImages", "ImportDuplicates", "ImportFailures")
    }
    assert progress == {"ImportedImages": [5], "ImportDuplicates": [0], "ImportFailures": [1]}
    assert [value for _, value in run.metric_values("ImagesAdded", ["service"])] == [5]  # the add path's own
    assert {c["Namespace"] for d in run.emf for c in d["_aws"]["CloudWatchMetrics"]} == {"ImageSimilarity"}
    assert run.logs and all(line["service"] == "image-similarity" for line in run.logs)
