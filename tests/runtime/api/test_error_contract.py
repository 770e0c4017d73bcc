"""The error contract: every code is documented, numbers and types are exact, methods and paths are honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.errors import ERROR_CODES
from tests.fakes.images import b64, image_bytes

ROOT = Path(__file__).resolve().parents[3]
CODE_LITERAL = re.compile(r"""code\s*=\s*"([a-z_]+)"|"code":\s*"([a-z_]+)"|:\s*"([a-z_]+)",\s*#\s*code""")
DOCUMENTED = {code for codes in ERROR_CODES.values() for code in codes}


def codes_in_source() -> set[str]:
    found = set()
    for path in (ROOT / "runtime").rglob("*.py"):
        for match in CODE_LITERAL.finditer(path.read_text()):
            found.add(next(group for group in match.groups() if group))
    from runtime.errors import VALIDATION_CODES

    return found | set(VALIDATION_CODES.values())


def test_the_codes_code_branches_on_are_in_the_catalog():
    from runtime import errors

    named = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)}
    assert {"image_exists", "library_not_found", "not_an_image"} <= named
    assert named | set(errors.JOB_STOPPING_CODES) <= DOCUMENTED


def test_every_code_the_source_answers_with_is_in_the_catalog():
    missing = codes_in_source() - DOCUMENTED
    assert not missing, f"add these to runtime.errors.ERROR_CODES and docs/api.md: {sorted(missing)}"


def test_every_code_is_in_the_api_reference():
    errors_section = (ROOT / "docs/api.md").read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    missing = [code for code in sorted(DOCUMENTED) if f"`{code}`" not in errors_section]
    assert not missing, f"docs/api.md's Errors section lacks {missing}"


def test_every_code_is_in_the_openapi_document(server):
    document = server.client.get("/api-explorer/openapi.json").json()
    described = document["components"]["schemas"]["ErrorResponse"]["properties"]["code"]["description"]
    assert [code for code in sorted(DOCUMENTED) if not re.search(rf"\b{code}\b", described)] == []


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/libraries/contract/search", {"text": "a", "top_k": "TOPK"}, "top_k"),
        ("/libraries/contract/images", {"img": "IMG", "metadata": {"price": "TOPK"}}, "metadata.price"),
        ("/image-similarity", {"inputs": [{"text": "a"}, {"text": "TOPK"}]}, "inputs[1].text"),
    ],
)
def test_an_overlong_integer_is_a_400_naming_its_field(server, path, body, field):
    server.post("/libraries", {"name": "contract"})
    raw = str(body).replace("'", '"').replace('"TOPK"', "9" * 5000).replace('"IMG"', f'"{b64(image_bytes(1))}"')
    response = server.post(path, raw.encode())
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_value"
    assert response.json()["message"].startswith(f"{field}: a number of 5000 digits")


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/libraries/contract/images", {"img": "IMG", "dedup": "false"}, "dedup"),
        ("/libraries/contract/images", {"img": "IMG", "threshold": "0.5"}, "threshold"),
        ("/libraries/contract/search", {"text": "a", "top_k": "5"}, "top_k"),
        ("/libraries/contract/search", {"text": "a", "min_score": "0.1"}, "min_score"),
        ("/libraries/contract/search", {"text": "a", "top_k": 5.0}, "top_k"),
        ("/image-similarity", {"text": 5}, "text"),
        ("/image-similarity", {"inputs": [{"text": True}]}, "inputs[0].text"),
        ("/libraries", {"name": 12}, "name"),
        ("/libraries/contract/imports", {"source": "s3://b/p/", "dedup": "false"}, "dedup"),
        ("/libraries/contract/imports", {"source": "s3://b/p/", "dedup": 0}, "dedup"),
        ("/libraries/contract/imports", {"source": "s3://b/p/", "threshold": "0.5"}, "threshold"),
        ("/libraries/contract/imports", {"source": "s3://b/p/", "threshold": True}, "threshold"),
        ("/libraries/contract/imports", {"manifest": 5}, "manifest"),
    ],
)
def test_fields_take_exactly_their_openapi_types(server, path, body, field):
    server.post("/libraries", {"name": "contract"})
    body = {key: (b64(image_bytes(2)) if value == "IMG" else value) for key, value in body.items()}
    response = server.post(path, body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_type"
    assert response.json()["message"].startswith(f"{field}:")


def test_a_float_field_still_takes_a_json_integer(server):
    server.post("/libraries", {"name": "contract"})
    assert server.post("/libraries/contract/search", {"text": "a", "min_score": 0}).status_code == 200


@pytest.mark.parametrize(
    "path, methods",
    [
        ("/libraries", {"GET", "POST"}),
        ("/libraries/contract", {"GET", "DELETE"}),
        ("/image-similarity", {"POST"}),
        ("/libraries/contract/images", {"POST"}),
        ("/libraries/contract/images/some-id", {"GET", "DELETE"}),
    ],
)
def test_options_and_405_list_every_method_of_the_path(server, path, methods):
    options = server.client.options(path)
    assert options.status_code == 204
    allowed = {method.strip() for method in options.headers["allow"].split(",")}
    assert methods | {"OPTIONS"} <= allowed
    wrong = server.client.request("PUT", path)
    assert wrong.status_code == 405
    assert {method.strip() for method in wrong.headers["allow"].split(",")} == allowed
    assert wrong.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/libraries/contract%2Fimages"),
        ("GET", "/libraries/contract/images/a%2fb"),
        ("DELETE", "/libraries/contract%2F..%2Fother"),
        ("POST", "/libraries/contract%2Fsearch"),
    ],
)
def test_an_encoded_slash_in_a_segment_is_refused_not_routed(server, method, path):
    server.post("/libraries", {"name": "contract"})
    response = server.client.request(method, path, json={"text": "a"} if method == "POST" else None)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_path"
    assert server.client.get("/libraries/contract").status_code == 200  # nothing was deleted
