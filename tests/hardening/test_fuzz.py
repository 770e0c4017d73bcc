"""Fuzzing: generated request bodies (hypothesis) and the OpenAPI document's operations (schemathesis).

Whatever arrives, the server answers below 500, every 4xx has the error shape ({"message", "code"},
library writes also ``"status": -1``), and the server is still up afterwards. The server is the
real app on a loopback port, as deployed (no non-public address may be fetched), with its own data
folder; no generated URL leaves the machine (hosts are refused addresses or ``.invalid`` names, and
``s3://`` URLs name buckets the settings do not allow).

Runtime: ~40 s on 2 cores; ``FUZZ_REQUESTS`` counts the requests sent.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer

FUZZ_REQUESTS = {"hypothesis": 0, "schemathesis": 0}
LIBRARY = "fuzz_lib"
ADD = f"/libraries/{LIBRARY}/images"
SEARCH = f"/libraries/{LIBRARY}/search"
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

PNG = image_bytes(11)
JPEG = image_bytes(12, fmt="JPEG")


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """A restore's body (``POST /libraries/{name}/restore``) is a text of JSON lines: the generated
    text goes as it is, lone surrogates included (the server must refuse them, not fail)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def fuzz_server(tiny_settings, tiny_engine, tmp_path_factory):
    settings_ = tiny_settings.replace(
        fetch_allow_networks=(),
        data_dir=str(tmp_path_factory.mktemp("fuzz-data")),
        s3_allowed_buckets=("fuzz-only-bucket",),
        fetch_timeout_s=2.0,
    )
    with LiveServer.start(settings_, tiny_engine) as live:
        created = live.post("/libraries", {"name": LIBRARY})
        assert created.status_code == 201, created.text
        added = live.post(f"/libraries/{LIBRARY}/images", {"img": b64(PNG), "id": "seed", "metadata": {"k": "v"}})
        assert added.status_code == 200, added.text
        yield live
        assert live.client.get("/ping").status_code == 200  # still up after everything
    # counts for the issue note (shown with pytest -s)
    print(f"\nfuzzed requests: {FUZZ_REQUESTS}")


def check_answer(response: httpx.Response, path: str, *, write: bool = False) -> None:
    """Below 500; a 4xx carries the error shape (and ``status: -1`` on library writes)."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code < 400:
        return
    body = response.json()
    if path.startswith("/v1/"):  # the OpenAI-compatible routes: OpenAI's error shape
        body = body["error"]
        assert body["type"] in ("invalid_request_error", "authentication_error", "server_error"), body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    # Errors answered before a request reaches a route (routing, encoded slashes, body limits) cannot know it
    # is a write.
    pre_route = {"route_not_found", "method_not_allowed", "invalid_path", "payload_too_large", "json_too_large"}
    if write and body["code"] not in pre_route:
        assert body.get("status") == -1, body


def send(server: LiveServer, method: str, path: str, body=None, *, raw: bytes | None = None, write: bool = False):
    """``body`` is sent as Python writes JSON: NaN and Infinity included, which its parser accepts."""
    FUZZ_REQUESTS["hypothesis"] += 1
    content = raw if raw is not None else json.dumps(body).encode()
    response = server.client.request(method, path, content=content, headers={"content-type": "application/json"})
    check_answer(response, path, write=write)
    return response


# --- strategies ---------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
long_strings = st.builds(
    lambda char, n: char * n, st.sampled_from(["A", "é", "字", "=", " ", "\\"]), st.integers(1_001, 200_000)
)
image_values = st.one_of(
    st.sampled_from([b64(PNG), b64(JPEG), "data:image/jpeg;base64," + b64(PNG), "data:;base64," + b64(JPEG)]),
    st.binary(max_size=600).map(b64),  # base64 of junk
    st.integers(0, len(PNG)).map(lambda n: b64(PNG[:n])),  # truncated images
    st.binary(min_size=1, max_size=64).map(lambda junk: b64(PNG[:40] + junk + PNG[40:])),  # corrupted
    st.text(alphabet=string.ascii_letters + string.digits + "+/=\n -_", max_size=200),  # base64-ish
)
url_values = st.one_of(
    st.sampled_from(
        [
            "http://localhost/a.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::1",
            "http://[zzz]/",
            "http://\u2100.com/",
            "http://user:pw@10.0.0.1/",
            "http://no-such-host.invalid/a.png",
            "https://127.0.0.1:0/",
            "file:///etc/passwd",
            "ftp://10.0.0.1/x",
            "gopher://127.0.0.1:70/_x",
            "s3://not-allowed-bucket/key.png",
            "s3://only-a-bucket",
            "",
            " ",
        ]
    ),
    st.builds(
        lambda host, path: f"http://{host}/{path}",
        st.sampled_from(["10.1.2.3", "[fe80::1%25eth0]", "0", "x.invalid"]),
        st.text(max_size=30),
    ),
    st.text(alphabet=string.printable, max_size=60).filter(lambda s: "://" not in s),
)
text_values = st.text(max_size=1_100) | long_strings
slot_values = st.one_of(image_values, url_values, text_values, json_values, long_strings)
unknown_keys = st.text(min_size=1, max_size=12).filter(lambda key: key not in SIMILARITY_FIELDS)

SIMILARITY_FIELDS = ["url", "img", "text", "url_1", "img_1", "text_1", "url_2", "img_2", "text_2", "inputs"]


def bodies(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """JSON objects with any subset of ``fields`` and, sometimes, unknown keys."""
    known = st.fixed_dictionaries({}, optional=fields)
    extra = st.dictionaries(unknown_keys, json_values, max_size=2)
    return st.builds(lambda a, b, with_extra: {**a, **b} if with_extra else a, known, extra, st.booleans())


slots = bodies({"url": url_values, "img": image_values, "text": text_values})
similarity_bodies = bodies(
    {
        "url": url_values,
        "img": image_values,
        "text": text_values,
        "img_1": image_values,
        "text_1": text_values,
        "url_2": url_values,
        "img_2": image_values,
        "text_2": text_values,
        "inputs": st.lists(slots | json_values, max_size=40) | json_values,
    }
)
add_bodies = bodies(
    {
        "url": url_values,
        "img": image_values,
        "id": st.text(max_size=140) | json_values,
        "metadata": st.dictionaries(st.text(max_size=20), json_values, max_size=8) | json_values,
        "dedup": st.booleans() | json_values,
        "threshold": st.floats() | json_values,
    }
)
search_bodies = bodies(
    {
        "url": url_values,
        "img": image_values,
        "text": text_values,
        "top_k": st.integers(-5, 500) | json_values,
        "min_score": st.floats() | json_values,
        "filter": st.dictionaries(st.text(max_size=10), json_values, max_size=4) | json_values,
    }
)
raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 5_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 5_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.text(max_size=200).map(lambda text: text.encode("utf-16")),
)
library_names = st.text(max_size=80) | st.sampled_from(["猫", "a" * 64, "a" * 65, "..", "%2F", "con", "\u0000", "名_1"])


# --- hypothesis: request bodies -----------------------------------------------------------


@FUZZ_SETTINGS
@given(body=similarity_bodies, path=st.sampled_from(["/image-similarity", "/text_similarity"]))
def test_similarity_bodies(fuzz_server, body, path):
    send(fuzz_server, "POST", path, body)


@FUZZ_SETTINGS
@given(raw=raw_bodies, path=st.sampled_from(["/image-similarity", "/libraries", ADD, SEARCH]))
def test_raw_bodies(fuzz_server, raw, path):
    send(fuzz_server, "POST", path, raw=raw, write=is_library_write("POST", path))


@FUZZ_SETTINGS
@given(body=add_bodies)
def test_library_add_bodies(fuzz_server, body):
    send(fuzz_server, "POST", ADD, body, write=True)


@FUZZ_SETTINGS
@given(body=search_bodies)
def test_library_search_bodies(fuzz_server, body):
    response = send(fuzz_server, "POST", SEARCH, body)
    if response.status_code == 200:
        scores = [match["score"] for match in response.json()["matches"]]
        assert all(0 <= score <= 1 for score in scores) and scores == sorted(scores, reverse=True)


@FUZZ_SETTINGS
@given(name=library_names, image_id=st.text(max_size=140))
def test_library_names_and_ids(fuzz_server, name, image_id):
    send(fuzz_server, "POST", "/libraries", {"name": name}, write=True)
    quoted, quoted_id = quote(name, safe=""), quote(image_id, safe="")
    send(fuzz_server, "GET", f"/libraries/{quoted}")
    send(fuzz_server, "GET", f"/libraries/{LIBRARY}/images/{quoted_id}")
    send(fuzz_server, "DELETE", f"/libraries/{LIBRARY}/images/{quoted_id or 'none'}x", write=True)
    if name != LIBRARY:
        send(fuzz_server, "DELETE", f"/libraries/{quoted}", write=True)


def test_fuzzing_sent_enough_requests_and_kept_the_seed(fuzz_server):
    """Runs after the property tests: the library they hammered still holds its first image."""
    assert FUZZ_REQUESTS["hypothesis"] >= 300
    seed = fuzz_server.client.get(f"/libraries/{LIBRARY}/images/seed")
    assert seed.status_code == 200 and seed.json()["metadata"] == {"k": "v"}


# --- schemathesis: every operation of the OpenAPI document --------------------------------
# schemathesis' pytest loader does not run under pytest 9, so each operation's case strategy is
# driven by hypothesis directly.


@pytest.fixture(scope="module")
def openapi_schema(fuzz_server):
    document = fuzz_server.client.get("/api-explorer/openapi.json")
    assert document.status_code == 200
    return schemathesis.openapi.from_dict(document.json())


def is_library_write(method: str, path: str) -> bool:
    """Image and library writes; bulk imports (start, cancel) are jobs, documented without ``status``."""
    writes = {"POST", "PATCH", "DELETE"}
    job = "/imports" in path
    reads = ("/search", "/count")  # POST, but reads
    return method.upper() in writes and path.startswith("/libraries") and not path.endswith(reads) and not job


def fuzz_operation(operation, mode: GenerationMode, server: LiveServer) -> None:
    """Schema-driven cases for one operation: schemathesis' checks (the answer matches the document:
    status codes, content types, bodies; bad input is refused), then the error shape."""
    write = is_library_write(operation.method, operation.path)

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        FUZZ_REQUESTS["schemathesis"] += 1
        response = case.call(base_url=server.url, timeout=30)
        # The document cannot say "exactly one of url, img and text", so a schema-valid body may be a 400.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        check_answer(httpx.Response(response.status_code, content=response.content), operation.path, write=write)

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_operations(openapi_schema, fuzz_server, mode):
    operations = [result.ok() for result in openapi_schema.get_all_operations()]
    assert len(operations) >= 10  # similarity, libraries, images, search, ping, explorer
    for operation in operations:
        try:
            fuzz_operation(operation, mode, fuzz_server)
        except Unsatisfiable:  # nothing to get wrong (GET /ping, string path parameters): no negative case
            assert mode is GenerationMode.NEGATIVE
