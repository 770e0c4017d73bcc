"""Every string of every JSON body, given a lone surrogate (``"\\ud800"``: valid JSON, not text).

The fields come from the live server's own document (``GET /api-explorer/openapi.json``), walked
into arrays, nested objects and free-form objects (``metadata``, ``filter``: a key and a value), so a
new route or field is attacked without a change here. Each answer is a 400 ``invalid_value`` whose
message names the field, in the JSON error shape, and the keep-alive connection it came on stays
open (``http.client`` drops a connection the server announced it would close, or that it closed).
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any
from urllib.parse import quote

import pytest
from starlette.routing import Route

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer

pytestmark = pytest.mark.slow

LIBRARY = "strings_lib"
IMAGE = "known"
VALID = {"name": LIBRARY, "id": IMAGE, "import_id": "0123456789abcdef0123456789abcdef"}
LONE = "\ud800"
MAX_DEPTH = 4


@pytest.fixture(scope="module")
def live(tiny_settings, tiny_engine, tmp_path_factory):
    settings = tiny_settings.replace(fetch_allow_networks=(), data_dir=str(tmp_path_factory.mktemp("strings-data")))
    with LiveServer.start(settings, tiny_engine) as server:
        assert server.post("/libraries", {"name": LIBRARY}).status_code == 201
        added = server.post(f"/libraries/{LIBRARY}/images", {"img": b64(image_bytes(5)), "id": IMAGE})
        assert added.status_code == 200, added.text
        yield server


def resolve(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def surrogate_slots(schema: dict, components: dict, depth: int = 0) -> list[tuple[str, Any]]:
    """``(field path, value)``: each way of putting a lone surrogate into a value of ``schema``."""
    schema = resolve(schema, components)
    if depth > MAX_DEPTH:
        return []
    slots: list[tuple[str, Any]] = []
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        slots.extend(surrogate_slots(option, components, depth))
    kind = schema.get("type")
    if kind == "string":
        slots.append(("", LONE))
    elif kind == "array" and "items" in schema:
        slots.extend((f"[0]{path}", [value]) for path, value in surrogate_slots(schema["items"], components, depth + 1))
    elif kind == "object" or "properties" in schema:
        for name, field in schema.get("properties", {}).items():
            slots.extend(
                (f".{name}{path}", {name: value}) for path, value in surrogate_slots(field, components, depth + 1)
            )
        if schema.get("additionalProperties", not schema.get("properties")) is not False:
            slots.append((" (one of its keys)", {LONE: 1}))
            slots.append((".k", {"k": LONE}))
    return slots


def body_cases(document: dict) -> list[tuple[str, str, str, Any]]:
    """``(method, path template, field, body)`` for every string a JSON request body may hold."""
    components = document.get("components", {}).get("schemas", {})
    cases = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            seen = set()
            for path, body in surrogate_slots(content["application/json"]["schema"], components):
                field = path.removeprefix(".") or "request body"
                if field.startswith(" "):
                    field = "request body" + field
                if field not in seen:
                    seen.add(field)
                    cases.append((method, template, field, body))
    return cases


def target(template: str) -> str:
    for name, value in VALID.items():
        template = template.replace("{" + name + "}", quote(value, safe=""))
    return template


def test_every_string_of_every_body_refuses_a_lone_surrogate(live):
    document = live.client.get("/api-explorer/openapi.json").json()
    cases = body_cases(document)
    fields = {(template, field) for _, template, field, _ in cases}
    # The walk reaches the places the attack used: nested URLs, filter keys, manifest URLs, metadata values.
    assert ("/libraries/{name}/images", "images[0].url") in fields
    assert ("/libraries/{name}/search", "filter (one of its keys)") in fields
    assert ("/libraries/{name}/imports", "manifest") in fields
    assert ("/libraries/{name}/images/{id}", "metadata.k") in fields
    assert ("/image-similarity", "inputs[0].text") in fields
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=60)
    connection.connect()
    opened = connection.sock
    try:
        for method, template, field, body in cases:
            where = f"{method.upper()} {template} {field}"
            content = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \ud800
            connection.request(method.upper(), target(template), content, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            if template.startswith("/v1/"):  # the OpenAI-compatible route answers in OpenAI's error shape
                answer = answer["error"]
            assert response.status == 400, f"{where}: {response.status} {answer}"
            assert answer["code"] == "invalid_value", f"{where}: {answer}"
            assert answer["message"].startswith(f"{field}: holds a lone surrogate"), f"{where}: {answer}"
            assert connection.sock is opened, f"{where}: the connection was closed"
    finally:
        connection.close()
    assert live.client.get(f"/libraries/{LIBRARY}").json()["image_count"] == 1  # nothing was added


def test_a_valid_surrogate_pair_is_text(live):
    found = live.post(f"/libraries/{LIBRARY}/search", json.dumps({"text": "\U0001f600 shoe"}).encode())
    assert found.status_code == 200, found.text
    assert b"\\ud83d\\ude00" in json.dumps({"text": "\U0001f600"}).encode()  # the pair was sent as escapes


def test_a_form_part_holding_a_lone_surrogate_is_refused(live):
    metadata = json.dumps({"colour": LONE})
    response = live.client.post(
        f"/libraries/{LIBRARY}/images", files={"img": ("a.png", image_bytes(7))}, data={"metadata": metadata}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_value"
    assert response.json()["message"].startswith("metadata.colour: holds a lone surrogate")


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [("url", b"https://a.example/+2AA-.png", "url"), ("+2AA-", b"a", "multipart body"), ("id", b"+3AA-x", "id")],
)
def test_a_form_decoded_to_a_lone_surrogate_is_refused(live, name, value, field):
    """A form's charset decodes its parts: UTF-7 turns ``+2AA-`` into ``\ud800``."""
    body = (
        f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b'\r\n--xyz\r\nContent-Disposition: form-data; name="img"; filename="a.png"\r\n\r\n'
        + image_bytes(8)
        + b"\r\n--xyz--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=xyz; charset=utf-7"}
    response = live.client.post(f"/libraries/{LIBRARY}/images", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_value"
    assert response.json()["message"].startswith(f"{field}: ") or response.json()["message"].startswith(field)


def test_an_unexpected_error_announces_that_the_connection_closes(tiny_settings, tiny_engine, tmp_path_factory):
    """uvicorn closes the connection after any 500 the app raised; the answer says so."""
    from runtime.api.app import create_app

    def broken(request):
        raise RuntimeError("a bug")

    app = create_app(tiny_settings.replace(data_dir=str(tmp_path_factory.mktemp("broken-data"))), engine=tiny_engine)
    app.router.routes.append(Route("/broken", broken))
    with LiveServer.serving(app) as live:
        connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=60)
        connection.request("GET", "/broken")
        response = connection.getresponse()
        assert response.status == 500
        assert response.getheader("connection") == "close"
        assert json.loads(response.read()) == {"message": "internal error", "code": "internal_error"}
        connection.request("GET", "/ping")  # a new connection: http.client honoured the header
        assert connection.getresponse().status == 200
        connection.close()


def test_a_page_token_decoding_to_a_lone_surrogate_is_refused(live):
    for position in ({"after": LONE}, {LONE: "x"}):
        token = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
        response = live.client.get(f"/libraries/{LIBRARY}/images", params={"next_token": token})
        assert (response.status_code, response.json()["code"]) == (400, "invalid_next_token"), response.text
    assert live.client.get(f"/libraries/{LIBRARY}/images").status_code == 200
