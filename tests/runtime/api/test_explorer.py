"""The API Explorer: its OpenAPI document, its page, explorer off, and the deployed handler."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from PIL import Image

from runtime.api.app import create_app
from runtime.api.routes.explorer import stage_base_url
from runtime.api.schemas import ERROR_EXAMPLES, SIMILARITY_EXAMPLES
from runtime.settings import Settings
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer

ROOT = Path(__file__).resolve().parents[3]
DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
# Routes deliberately left out of the document: SageMaker's container contract and Swagger UI's files.
UNDOCUMENTED = {
    ("POST", "/invocations"),
    ("GET", "/api-explorer/assets/{name}"),
    ("GET", "/libraries-ui/assets/{name}"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.fixture(scope="module")
def document(server) -> dict:
    response = server.client.get("/api-explorer/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def full_app(tiny_settings, tiny_engine) -> FastAPI:
    """Every route the runtime can serve (with the SageMaker route too)."""
    return create_app(tiny_settings, engine=tiny_engine, sagemaker=True)


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def served_routes(app: FastAPI, hidden: bool | None = None) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers (``hidden``: only those out of the schema, or in it)."""
    return {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if hidden is None or hidden != route.include_in_schema
        for method in route.methods
    }


def undocumented_routes(app: FastAPI, document: dict) -> set[tuple[str, str]]:
    documented = {(method, path) for method, path, _ in operations(document)}
    return served_routes(app) - documented - UNDOCUMENTED


def document_of(app: FastAPI) -> dict:
    with TestClient(app) as client:
        return client.get("/api-explorer/openapi.json").json()


# --- the document -----------------------------------------------------------------------


def test_document_is_valid_openapi_31(document):
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "Image Similarity API"


def test_every_route_of_the_app_is_documented(full_app):
    document = document_of(full_app)
    routes = list(iter_route_contexts(full_app.routes))
    assert all(isinstance(route.original_route, APIRoute) for route in routes), "a mount or raw route escapes the check"
    assert undocumented_routes(full_app, document) == set()
    assert served_routes(full_app, hidden=True) == UNDOCUMENTED, "a route was hidden from the document"
    for method, path in [
        ("POST", "/image-similarity"),
        ("POST", "/text_similarity"),
        ("GET", "/ping"),
        ("GET", "/api-explorer"),
    ]:
        assert (method, path) in {(m, p) for m, p, _ in operations(document)}


def test_the_coverage_check_fails_on_a_route_the_document_lacks(full_app):
    document = document_of(full_app)
    app = create_app(Settings(), serve_model=False)

    @app.get("/secret-route", include_in_schema=False)
    def secret() -> dict:
        return {}

    assert undocumented_routes(app, document) == {("GET", "/secret-route")}


def test_library_routes_are_documented(full_app, document):
    library_routes = {(m, path) for m, path in served_routes(full_app) if path.split("/")[1] == "libraries"}
    assert len({(m, path) for m, path in library_routes if "/imports" not in path}) == 16  # thumbnails, count,
    # deletes, duplicates, export, restore
    assert len({(m, path) for m, path in library_routes if "/imports" in path}) == 5  # bulk imports, failures
    documented = {(m, p) for m, p, _ in operations(document)}
    assert library_routes <= documented


def test_every_operation_and_error_has_examples(document):
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        body = operation.get("requestBody")
        if body:
            media = body["content"].get("application/json") or next(iter(body["content"].values()))  # restore: JSONL
            assert media.get("examples") or media.get("example"), f"{where}: request body without examples"
        responses = operation["responses"]
        assert "422" not in responses, f"{where}: documents FastAPI's 422; the app answers 400"
        for status, response in responses.items():
            media = next(iter(response.get("content", {}).values()), {})
            examples = media.get("examples") or ({"example": {"value": media["example"]}} if "example" in media else {})
            assert examples, f"{where}: response {status} without examples"
            if int(status) >= 400 and path.startswith("/v1/"):  # OpenAI-compatible: OpenAI's error shape
                assert media["schema"] == {"$ref": "#/components/schemas/OpenAIError"}, f"{where} {status}"
                for name, example in examples.items():
                    assert set(example["value"]["error"]) >= {"message", "code", "type"}, f"{where} {status} {name}"
            elif int(status) >= 400:
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, f"{where} {status}"
                for name, example in examples.items():
                    assert set(example["value"]) >= {"message", "code"}, f"{where} {status} {name}"
    assert set(schemas["ErrorResponse"]["required"]) == {"message", "code"}
    assert "HTTPValidationError" not in schemas


def test_similarity_operation_lists_the_seed_examples(document):
    operation = document["paths"]["/image-similarity"]["post"]
    request_examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"single-url", "single-img", "single-text", "pair", "batch"} <= set(request_examples)
    for status in ("200", "400", "413", "502"):
        assert status in operation["responses"]


@pytest.mark.parametrize("name", [n for n, e in SIMILARITY_EXAMPLES.items() if "example.com" not in json.dumps(e)])
def test_request_examples_are_answered_by_the_api(server, name):
    """The offline examples (no outside URL) are requests the API really answers."""
    body = SIMILARITY_EXAMPLES[name]["value"]
    response = server.post("/image-similarity", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    if "inputs" in body:
        assert [len(v) for v in answer["results"]] == [512] * len(body["inputs"])
    elif "img_1" in body:
        assert 0 <= answer["similarity"] <= 1
    else:
        assert len(answer["result"]) == 512


def big_png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (9000, 3000), (200, 30, 30)).save(out, format="PNG")
    return b64(out.getvalue())


ERROR_TRIGGERS = {
    "missing_input": dict,
    "ambiguous_input": lambda: {"url": "https://example.com/a.jpg", "img": b64(image_bytes(1))},
    "unknown_field": lambda: {"txt": "a cat"},
    "invalid_base64": lambda: {"img": "not base64!"},
    "not_an_image": lambda: {"img": b64(b"hello")},
    "image_too_large": lambda: {"img": big_png()},
    "url_refused": lambda: {"url": "http://169.254.169.254/latest/meta-data/"},
    "text_too_long": lambda: {"text": "a" * 1001},
    "batch_too_large": lambda: {"inputs": [{"text": "a cat"}] * 33},
}


@pytest.mark.parametrize("name", sorted(ERROR_EXAMPLES[400]))
def test_error_examples_are_the_api_s_real_answers(strict_server, name):
    response = strict_server.post("/image-similarity", ERROR_TRIGGERS[name]())
    assert response.status_code == 400
    assert response.json() == ERROR_EXAMPLES[400][name]["value"]


def test_limits_come_from_the_settings():
    settings = Settings(max_batch=7, max_image_side=1234, max_top_k=55, max_libraries=3)
    description = document_of(create_app(settings, serve_model=False))["info"]["description"]
    assert "## Limits" in description
    for stated in ("at most 7 inputs", "at most 1234 px", "from 1 to 55", "at most 3 libraries"):
        assert stated in description


def test_local_servers_entry_is_this_server(document, server):
    assert document["servers"][0]["url"] == server.url


def test_public_base_url_setting_is_the_server_tried():
    app = create_app(Settings(public_base_url="https://images.example.org/v1/"), serve_model=False)
    assert document_of(app)["servers"][0]["url"] == "https://images.example.org/v1"


# --- the page and the switch -------------------------------------------------------------


def test_page_loads_swagger_ui_from_this_server_only(server):
    page = server.client.get("/api-explorer")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="swagger-ui">' in page.text
    assert '"url": "/api-explorer/openapi.json"' in page.text
    assert "http" not in page.text.replace(server.url, ""), "the page must not load anything from elsewhere"
    for asset, kind in [("swagger-ui-bundle.js", "application/javascript"), ("swagger-ui.css", "text/css")]:
        response = server.client.get(f"/api-explorer/assets/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert len(response.content) > 10_000
    missing = server.client.get("/api-explorer/assets/..%2Fsettings.py")
    assert missing.status_code in (400, 404)  # an encoded slash is refused before routing
    assert missing.json()["code"] in {"not_found", "route_not_found", "invalid_path"}


def test_no_iam_note_when_auth_is_none(server, document):
    assert 'id="iam-note"' not in server.client.get("/api-explorer").text
    assert "AWS_IAM" not in document["info"]["description"]


def test_explorer_off_has_no_route(tiny_settings):
    app = create_app(tiny_settings.replace(explorer=False), serve_model=False)
    assert not [path for _, path in served_routes(app) if path.startswith(("/api-explorer", "/libraries-ui"))]
    with LiveServer.start(tiny_settings.replace(explorer=False), None, serve_model=False) as live:
        for path in (
            "/api-explorer",
            "/api-explorer/openapi.json",
            "/api-explorer/assets/swagger-ui-bundle.js",
            "/libraries-ui",
            "/libraries-ui/assets/library.js",
            "/openapi.json",
            "/docs",
        ):
            response = live.client.get(path)
            assert response.status_code == 404, path
            assert response.json()["code"] == "route_not_found"


def test_app_without_a_model_refuses_model_routes():
    """``serve_model=False`` (the explorer's function) answers 503; it never makes up a vector."""
    with TestClient(
        create_app(Settings(engine="sagemaker", sagemaker_endpoint="embedder"), serve_model=False)
    ) as client:
        response = client.post("/image-similarity", json={"text": "a cat"})
    assert response.status_code == 503
    assert response.json()["code"] == "model_not_served"


# --- deployed -------------------------------------------------------------------------------


def rest_proxy_event(path: str, stage: str = "prod", domain: str = DOMAIN, base_path: str | None = None) -> dict:
    """A GET as API Gateway's REST Lambda proxy integration sends it for the explorer's resources."""
    proxy = path.removeprefix("/api-explorer").lstrip("/")
    resource = "/api-explorer/{proxy+}" if proxy else "/api-explorer"
    headers = {
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
        "Host": domain,
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
        "X-Amzn-Trace-Id": "Root=1-66b2c9a1-5e1b2c3d4e5f6a7b8c9d0e1f",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    full_path = f"/{stage}{path}" if base_path is None else f"{base_path}{path}"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "k2x9ab",
            "resourcePath": resource,
            "httpMethod": "GET",
            "extendedRequestId": "c8Zl2FhSIAMEb9Q=",
            "requestTime": "12/Aug/2025:10:21:33 +0000",
            "path": full_path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain.split(".")[0],
            "requestTimeEpoch": 1754994093123,
            "requestId": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0", "accountId": None, "user": None},
            "domainName": domain,
            "deploymentId": "a1b2c3",
            "apiId": domain.split(".")[0],
        },
        "body": None,
        "isBase64Encoded": False,
    }


# Runs the handler as the front image does: torch cannot be imported and no model endpoint is
# configured, so loading any engine would fail.
DEPLOYED_SCRIPT = """
import json, sys
sys.modules["torch"] = None
sys.modules["open_clip"] = None
import explorer_handler

class Context:
    function_name = "explorer"; aws_request_id = "req-1"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:explorer"
    def get_remaining_time_in_millis(self): return 29000

answers = [explorer_handler.handler(event, Context()) for event in json.load(sys.stdin)]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "open_clip", "torchvision"} and sys.modules[m])
print(json.dumps({"answers": answers, "heavy_modules": loaded}))
"""


@pytest.fixture(scope="module")
def deployed():
    """The deployed explorer's handler (IAM-protected API) answering three requests of a browser."""
    events = [
        rest_proxy_event("/api-explorer"),
        rest_proxy_event("/api-explorer/openapi.json"),
        rest_proxy_event("/api-explorer/assets/swagger-ui-bundle.js"),
    ]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMSIM_")},
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'lambda_image'}",
        "IMSIM_ENGINE": "sagemaker",
        "IMSIM_SAGEMAKER_ENDPOINT": "embedder",  # a front function's environment: settings refuse one without it
        "IMSIM_AUTH": "AWS_IAM",
        "IMSIM_EXPLORER": "false",  # the explorer's own function serves it whatever the API's flag says
        "IMSIM_STORE": "s3vectors",  # ... and opens no library store
    }
    result = subprocess.run(
        [sys.executable, "-c", DEPLOYED_SCRIPT],
        input=json.dumps(events),
        env=env,
        cwd=ROOT / "lambda_image",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_deployed_handler_answers_the_page(deployed):
    page = deployed["answers"][0]
    assert page["statusCode"] == 200
    assert page["headers"]["content-type"].startswith("text/html")
    assert '<div id="swagger-ui">' in page["body"]
    assert '"url": "/prod/api-explorer/openapi.json"' in page["body"]
    assert 'src="/prod/api-explorer/assets/swagger-ui-bundle.js"' in page["body"]


def test_deployed_spec_carries_the_stage_url(deployed):
    spec = deployed["answers"][1]
    assert spec["statusCode"] == 200
    document = json.loads(spec["body"])
    validate(document)
    assert document["servers"] == [{"url": f"https://{DOMAIN}/prod", "description": "this API Gateway stage"}]
    assert "/image-similarity" in document["paths"]


def test_deployed_handler_serves_swagger_ui_and_loads_no_model(deployed):
    asset = deployed["answers"][2]
    assert asset["statusCode"] == 200 and not asset["isBase64Encoded"]
    assert "SwaggerUIBundle" in asset["body"]
    assert deployed["heavy_modules"] == []


def test_iam_note_on_page_and_in_document(deployed):
    page = deployed["answers"][0]["body"]
    assert 'id="iam-note"' in page
    assert "Try it out needs <code>NONE</code> or <code>API_KEY</code> authorization" in page
    description = json.loads(deployed["answers"][1]["body"])["info"]["description"]
    assert "## Authorization: AWS_IAM" in description
    assert "--region us-east-1 -X POST" in description
    assert f"https://{DOMAIN}/prod/image-similarity" in description
    assert 'SigV4Auth(boto3.Session().get_credentials(), "execute-api", "us-east-1")' in description


@pytest.mark.parametrize(
    ("domain", "stage", "base_path", "expected"),
    [
        (DOMAIN, "prod", None, f"https://{DOMAIN}/prod"),
        (DOMAIN, "v2-beta", None, f"https://{DOMAIN}/v2-beta"),
        (
            "abc123.execute-api.cn-northwest-1.amazonaws.com.cn",
            "prod",
            None,
            "https://abc123.execute-api.cn-northwest-1.amazonaws.com.cn/prod",
        ),
        ("api.example.org", "prod", "", "https://api.example.org"),  # custom domain mapped at its root
        ("api.example.org", "prod", "/images", "https://api.example.org/images"),  # custom domain, base path
    ],
)
def test_stage_url_from_the_event(domain, stage, base_path, expected):
    assert stage_base_url(rest_proxy_event("/api-explorer", stage, domain, base_path)) == expected


def test_api_key_authorization_declares_the_key_for_swagger_ui(tiny_settings):
    """Deployed with ApiAuthorization API_KEY: Swagger UI shows Authorize with an x-api-key field."""
    app = create_app(tiny_settings.replace(auth="API_KEY", explorer=True, store="off"), serve_model=False)
    with TestClient(app) as client:
        document = client.get("/api-explorer/openapi.json").json()
    validate(document)
    assert document["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": "x-api-key",
        "in": "header",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            keyed = operation.get("security") == [{"api_key": []}]
            assert keyed == (not path.startswith(("/api-explorer", "/libraries-ui"))), (method, path)
    assert "## Authorization: API_KEY" in document["info"]["description"]
    assert "aws apigateway get-api-key --api-key <ApiKeyId> --include-value" in document["info"]["description"]
    # The per-request copy leaves the app's cached document as generated.
    assert not any("security" in op for ops in app.openapi_schema["paths"].values() for op in ops.values())


def test_no_api_key_scheme_unless_the_authorization_is_api_key(document):
    assert "securitySchemes" not in document.get("components", {})
    assert not any("security" in op for ops in document["paths"].values() for op in ops.values())


def test_the_example_swagger_fills_in_first_needs_no_internet(document):
    """Swagger UI puts an operation's first example in the body: "Try it out" must work offline."""
    for method, path, operation in operations(document):
        body = operation.get("requestBody")
        if body and not path.endswith("/imports"):  # an import's source is a bucket or a manifest URL
            media = body["content"].get("application/json") or next(iter(body["content"].values()))  # restore: JSONL
            first = next(iter(media["examples"].values()))
            sent = json.dumps(first["value"])
            assert "example.com" not in sent and "s3://" not in sent, f"{method} {path}: {sent[:100]}"


@pytest.mark.parametrize("path", ["/api-explorer", "/libraries-ui"])
def test_smoke_mode_says_on_both_pages_that_the_scores_mean_nothing(path):
    for smoke in (True, False):
        app = create_app(Settings(smoke=smoke, explorer=True, store="off"), serve_model=False)
        with TestClient(app) as client:
            page = client.get(path).text
        assert ('id="smoke-note"' in page) is smoke
        assert ("weights are random" in page) is smoke
