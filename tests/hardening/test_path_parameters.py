"""Every path parameter and query parameter of the OpenAPI document, driven with hostile strings.

The operations come from the live server's own document (``GET /api-explorer/openapi.json``), so a
new route or parameter is attacked without a change here. Each string is sent raw (the request
target is given to httpx as bytes, so nothing is normalised or re-encoded on the way): over-long
(up to 10,000 characters), lone surrogates as their WTF-8 bytes (``%ED%A0%80``), digits of other
scripts, NUL, broken percent escapes, ``..``, an encoded ``/``, emoji, bytes that are no UTF-8.
Every answer is a 4xx with the error body ``{"message", "code"}`` (or the route's own 2xx where the
string happens to be valid), never a 5xx, and the keep-alive connection still answers afterwards.

The server is the real app on a loopback port with its own data folder, which has an ``imports``
folder as after a first import (so import ids reach the file system, as they did in the attack).
Runtime: ~15 s on 2 cores.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer

pytestmark = pytest.mark.slow

LIBRARY = "paths_lib"
IMAGES = ("known1", "known2")
MISSING_IMPORT = "0123456789abcdef0123456789abcdef"
"""An id of the shape ``new_import_id`` makes, of no import."""
VALID = {"name": LIBRARY, "id": IMAGES[0], "import_id": MISSING_IMPORT}
"""What a path parameter holds while another one is attacked."""
BODIES = {
    ("post", "/libraries/{name}/images"): {"img": b64(image_bytes(31)), "dedup": False},
    ("post", "/libraries/{name}/search"): {"text": "a red shoe"},
    ("post", "/libraries/{name}/imports"): {"source": "s3://not-an-allowed-bucket/2025/"},
    ("patch", "/libraries/{name}/images/{id}"): {"metadata": {"k": "v"}},
}
"""A valid body for the operations that take one (any other gets ``{}``), so the parameter is what is judged."""
HOSTILE_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
MAX_MESSAGE = 2000
MAX_TARGET_CHARS = 60_000
"""Longer request lines (about 80 KB) are refused by uvicorn's HTTP parser itself, a plain-text 400 before
the app sees them; up to this many characters the app answers (10,000 emoji are 120,000 once encoded)."""


def encoded(text: str) -> str:
    """Percent-encoded UTF-8, a lone surrogate as its WTF-8 bytes (``\\ud800`` is ``%ED%A0%80``)."""
    data = text.encode("utf-8", "surrogatepass")
    return "".join(chr(byte) if byte in UNRESERVED else f"%{byte:02X}" for byte in data)


JUNK = [
    "%",
    "%%",
    "%G0",
    "%zz",
    "%2",
    "%00",
    "a%00b",
    "%2F",
    "a%2Fb",
    "%2f..%2f..%2fetc%2fpasswd",
    "..",
    ".",
    "...",
    "%2E%2E",
    "%2e",
    "..%5C..%5Cwindows",
    "%C0%AE%C0%AE",
    "%C0%AF",
    "%FF%FE%FD",
    "%ED%A0%80",
    "%ED%B0%80",
    "%ED%A0%80%ED%B0%80",
    "%F0%9F%98%80",
    "%E2%80%AE",
    "%EF%BB%BF",
    "%D9%A3%D9%A4%D9%A5",
    "%F4%90%80%80",
    "+",
    "%20",
    "%09",
    "%0D%0A",
    "%23",
    "%3F",
    "%26",
    "~",
    LIBRARY,
    IMAGES[1],
    MISSING_IMPORT,
    MISSING_IMPORT.upper(),
    "a" * 30,
]
"""Fixed attacks, and values that are valid (the route's normal answer: 2xx, or a 404 of its own)."""
LONG_UNITS = ["a", "f", "0", "\u0663", "\U0001f600", "\ud800", "\u00e9", "\x00", "\u3164"]
"""Repeated up to 10,000 times: ASCII, hex, Arabic-Indic three, emoji, a lone surrogate, NUL, a Hangul filler."""


def hostile_segment() -> st.SearchStrategy[str]:
    """One raw (already percent-encoded) path segment or query value."""
    surrogate = st.integers(0xD800, 0xDFFF).map(chr)
    other_digits = st.characters(categories=["Nd"], exclude_characters="0123456789")
    pieces = st.one_of(
        st.sampled_from(JUNK),
        st.text(min_size=1, max_size=40).map(encoded),
        st.text(st.one_of(st.characters(), surrogate), min_size=1, max_size=20).map(encoded),
        st.text(other_digits, min_size=1, max_size=40).map(encoded),
        st.binary(min_size=1, max_size=40).map(lambda data: "".join(f"%{byte:02X}" for byte in data)),
        st.builds(lambda unit, count: encoded(unit * count), st.sampled_from(LONG_UNITS), st.integers(100, 10_000)),
    )
    return st.lists(pieces, min_size=1, max_size=3).map(lambda parts: "".join(parts)[:MAX_TARGET_CHARS])


def add_fixtures(client: httpx.Client) -> None:
    """The library and its two images (again, should an attack have deleted them with a valid value)."""
    assert client.post("/libraries", json={"name": LIBRARY}).status_code in (201, 409)
    for seed, image_id in enumerate(IMAGES):
        added = client.post(f"/libraries/{LIBRARY}/images", json={"img": b64(image_bytes(seed)), "id": image_id})
        assert added.status_code in (200, 409), added.text


@pytest.fixture(scope="module")
def live(tiny_settings, tiny_engine, tmp_path_factory):
    data = tmp_path_factory.mktemp("path-parameters-data")
    (data / "imports").mkdir()  # as after a first import: a job's folder is looked up by its id
    settings_ = tiny_settings.replace(fetch_allow_networks=(), data_dir=str(data), s3_allowed_buckets=("allowed",))
    with LiveServer.start(settings_, tiny_engine) as server:
        add_fixtures(server.client)
        yield server
        assert server.client.get("/ping").status_code == 200


@pytest.fixture(scope="module")
def targets(live) -> list[tuple[str, str, str, str]]:
    """``(method, path template, parameter, where)`` for every path and query parameter in the document."""
    document = live.client.get("/api-explorer/openapi.json")
    assert document.status_code == 200
    found = []
    for template, operations in document.json()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] in ("path", "query"):
                    found.append((method, template, parameter["name"], parameter["in"]))
    attacked = {(template, name) for _, template, name, _ in found}
    assert ("/libraries/{name}/imports/{import_id}", "import_id") in attacked
    assert ("/libraries/{name}/images", "next_token") in attacked
    return found


def request_target(template: str, parameter: str, where: str, raw: str) -> bytes:
    path = template
    for name, value in VALID.items():
        path = path.replace("{" + name + "}", raw if (where, name) == ("path", parameter) else quote(value, safe=""))
    assert "{" not in path, f"{template}: a path parameter with no valid value in VALID"
    if where == "query":
        path += f"?{parameter}={raw}"
    return path.encode("ascii")


def check_answer(client: httpx.Client, method: str, target: bytes, body: dict | None) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    where = f"{method.upper()} {target[:200]!r}"
    response = client.request(method, "/", content=content, headers=headers, extensions={"target": target})
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, where
    if response.status_code >= 400:
        answer = response.json()
        assert isinstance(answer.get("message"), str) and isinstance(answer.get("code"), str), f"{where}: {answer}"
        assert len(answer["message"]) < MAX_MESSAGE, f"{where}: the message echoes the whole input"
    assert client.get("/libraries").status_code == 200, f"{where}: the connection is not usable afterwards"
    return response


def send(client: httpx.Client, method: str, template: str, parameter: str, where: str, raw: str) -> httpx.Response:
    target = request_target(template, parameter, where, raw)
    body = BODIES.get((method, template), {}) if method in ("post", "patch", "put") else None
    response = check_answer(client, method, target, body)
    if method == "delete" and response.is_success:
        add_fixtures(client)
    return response


@HOSTILE_SETTINGS
@given(data=st.data())
def test_every_parameter_answers_hostile_strings_with_a_4xx(live, targets, data):
    raw = data.draw(hostile_segment(), label="raw")
    for method, template, parameter, where in targets:
        send(live.client, method, template, parameter, where, raw)


# --- the three found by the attack, and their neighbours ---------------------------------------

IMPORT = f"/libraries/{LIBRARY}/imports"


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 30,
        "a" * 256,
        "a" * 10_000,
        encoded("\u0663\u0664\u0665"),
        encoded("\u0663" * 200),
        encoded("\u0663" * 32),
        "%00",
        "%ED%A0%80",
        MISSING_IMPORT.upper(),
        encoded("\uff41" * 32),  # fullwidth a
    ],
    ids=lambda raw: raw[:24],
)
@pytest.mark.parametrize("method", ["get", "delete"])
def test_an_import_id_it_could_not_have_made_is_not_found(live, method, raw):
    response = check_answer(live.client, method, f"{IMPORT}/{raw}".encode(), None)
    assert response.status_code == 404 and response.json()["code"] == "import_not_found", response.text[:300]


def token(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize(
    "decoded",
    [
        b'{"after":"\\ud800"}',
        b'{"after":"known1\\udfff"}',
        b'{"aws":"\\ud800"}',
        b'{"after":5}',
        b'{"after":["known1"]}',
        b'{"after":null}',
        b"[]",
        b'"known1"',
        b"\xff\xfe",
        b'{"after":"\xed\xa0\x80"}',
        b"[" * 5000 + b"]" * 5000,
        b"{",
    ],
    ids=lambda decoded: decoded[:24].decode("latin-1"),
)
def test_a_token_it_did_not_give_is_invalid_next_token(live, decoded):
    target = f"/libraries/{LIBRARY}/images?next_token={token(decoded)}".encode()
    response = check_answer(live.client, "get", target, None)
    assert response.status_code == 400 and response.json()["code"] == "invalid_next_token", response.text[:300]


def test_a_token_it_gave_still_turns_the_page(live):
    seen: list[str] = []
    params: dict = {"limit": 1}
    while True:
        page = live.client.get(f"/libraries/{LIBRARY}/images", params=params)
        assert page.status_code == 200, page.text
        seen += [image["id"] for image in page.json()["images"]]
        if page.json()["next_token"] is None:
            break
        params["next_token"] = page.json()["next_token"]
    assert seen == sorted(set(seen)) and set(IMAGES) <= set(seen)
