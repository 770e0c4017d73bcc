"""The local server's doors (runtime/api/doors.py), attacked through ``python -m runtime serve``.

A web page of another site drives the API on 127.0.0.1 with "simple" requests (no preflight):
a cross-site ``text/plain`` or form POST, or, after DNS rebinding, any request under the attacker's
``Host``. Each is refused and creates nothing; the API Explorer's own requests (same origin) and
clients that are not browsers (no ``Origin``, no ``Sec-Fetch-Site``) work as before; with an API
key, only requests carrying it in ``x-api-key`` are answered.
"""

from __future__ import annotations

import json

import httpx
import pytest

from bench.common import ServerProcess, server_args

pytestmark = pytest.mark.slow

KEY = "a-local-key-of-this-test-0123456789"
EVIL = "http://evil.example"


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    return body["message"]


def exists(client: httpx.Client, name: str) -> bool:
    return client.get(f"/libraries/{name}").status_code == 200


def test_a_host_that_is_not_the_servers_is_refused(attacked_server):
    _, client = attacked_server
    rebound = {"host": "evil.example"}
    message = error_of(client.get("/libraries", headers=rebound), 400, "invalid_host")
    assert message.startswith("Host: 'evil.example' is not a name of this server")
    error_of(client.post("/libraries", json={"name": "rebound_lib"}, headers=rebound), 400, "invalid_host")
    error_of(client.get("/ping", headers={"host": "evil.example:8080"}), 400, "invalid_host")
    assert not exists(client, "rebound_lib")
    port = client.base_url.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert client.get("/libraries", headers={"host": host}).status_code == 200, host


@pytest.mark.parametrize(
    ("content_type", "browser"),
    [
        ("text/plain", {"origin": EVIL, "sec-fetch-site": "cross-site"}),
        ("text/plain", {"origin": EVIL}),  # an older browser: Origin only
        ("application/x-www-form-urlencoded", {"origin": EVIL, "sec-fetch-site": "cross-site"}),
        ("application/json", {"sec-fetch-site": "cross-site"}),
        ("text/plain", {"origin": "null", "sec-fetch-site": "cross-site"}),  # a sandboxed frame, a file:// page
        ("application/json", {"origin": "http://localhost:3000", "sec-fetch-site": "same-site"}),  # another port
    ],
)
def test_a_cross_site_write_is_refused_and_creates_nothing(attacked_server, content_type, browser):
    _, client = attacked_server
    body = json.dumps({"name": "csrf_lib"}).encode()
    response = client.post("/libraries", content=body, headers={"content-type": content_type, **browser})
    message = error_of(response, 403, "cross_site_request")
    assert message.startswith("Origin: a page of another site may not write to this server")
    assert not exists(client, "csrf_lib")


def test_a_cross_site_read_is_answered(attacked_server):
    """Reads change nothing, and the browser keeps their answer from the other site (no CORS headers)."""
    _, client = attacked_server
    response = client.get("/libraries", headers={"origin": EVIL, "sec-fetch-site": "cross-site"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_the_explorers_own_requests_are_same_origin_and_work(attacked_server):
    _, client = attacked_server
    page = client.get("/api-explorer", headers={"sec-fetch-site": "none"})
    assert page.status_code == 200 and "swagger" in page.text.lower()
    origin = f"http://127.0.0.1:{client.base_url.port}"
    explorer = {"origin": origin, "sec-fetch-site": "same-origin", "referer": f"{origin}/api-explorer"}
    created = client.post("/libraries", json={"name": "explorer_lib"}, headers=explorer)
    assert created.status_code == 201, created.text
    assert client.delete("/libraries/explorer_lib", headers=explorer).status_code == 200


def test_clients_that_are_not_browsers_are_unchanged(attacked_server):
    _, client = attacked_server
    created = client.post("/libraries", json={"name": "script_lib"})
    assert created.status_code == 201, created.text
    assert client.delete("/libraries/script_lib").status_code == 200


@pytest.fixture(scope="module")
def keyed_server(tiny_settings, tmp_path_factory):
    settings = tiny_settings.replace(data_dir=str(tmp_path_factory.mktemp("keyed-data")))
    flags = ("--api-key", KEY, "--allowed-host", "dev-box.example")
    with ServerProcess(*server_args(settings), *flags) as server, httpx.Client(base_url=server.url) as client:
        yield client


def test_with_a_key_every_request_must_carry_it(keyed_server):
    client = keyed_server
    message = error_of(client.get("/libraries"), 401, "invalid_api_key")
    assert message.startswith("x-api-key: missing")
    error_of(client.get("/libraries", headers={"x-api-key": KEY[:-1]}), 401, "invalid_api_key")
    error_of(client.get("/libraries", headers={"authorization": f"Bearer {KEY}"}), 401, "invalid_api_key")
    error_of(client.post("/libraries", json={"name": "keyless_lib"}), 401, "invalid_api_key")
    keyed = {"x-api-key": KEY}
    assert client.get("/libraries/keyless_lib", headers=keyed).status_code == 404  # nothing was created
    created = client.post("/libraries", json={"name": "keyed_lib"}, headers=keyed)
    assert created.status_code == 201, created.text


def test_the_health_check_and_the_explorer_need_no_key(keyed_server):
    client = keyed_server
    assert client.get("/ping").status_code == 200
    assert client.get("/api-explorer").status_code == 200
    document = client.get("/api-explorer/openapi.json")
    assert document.status_code == 200
    scheme = document.json()["components"]["securitySchemes"]["api_key"]
    assert scheme == {"type": "apiKey", "name": "x-api-key", "in": "header"}  # "Authorize" sends the key
    error_of(client.post("/api-explorer"), 401, "invalid_api_key")  # only its reads are keyless


def test_allowed_hosts_replace_the_default_names_and_the_bound_address_stays(keyed_server):
    client = keyed_server
    keyed = {"x-api-key": KEY}
    port = client.base_url.port
    assert client.get("/libraries", headers={**keyed, "host": f"dev-box.example:{port}"}).status_code == 200
    assert client.get("/libraries", headers={**keyed, "host": f"127.0.0.1:{port}"}).status_code == 200  # --host
    error_of(client.get("/libraries", headers={**keyed, "host": f"localhost:{port}"}), 400, "invalid_host")
