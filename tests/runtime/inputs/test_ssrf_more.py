"""SSRF beyond tests/test_ssrf.py: names that resolve to private addresses, DNS rebinding, redirect
chains, other schemes, credentials, IPv6 zone ids and unusual ports. Every refusal is checked with a
listening socket that counts connections: a refused URL never reaches it.

Names are resolved by a stand-in for ``socket.getaddrinfo`` (the API runs in this process), so a
"public" name can answer with any address without a DNS server; other names resolve as usual.

Runtime: ~5 s.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.fakes.images import image_bytes
from tests.fakes.servers import FileServer, LiveServer
from tests.runtime.inputs import test_ssrf

PNG = image_bytes(31)
counter_v4 = test_ssrf.counter_v4  # the listening sockets that count connections (IPv4 and IPv6)
counter_v6 = test_ssrf.counter_v6


@pytest.fixture
def fake_dns(monkeypatch):
    """``records[name]``: the addresses each lookup of ``name`` answers, one list per lookup (the
    last list repeats). ``lookups`` lists the names looked up."""
    records: dict[str, list[list[str]]] = {}
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name.lower() not in records:
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(name)
        answers = records[name.lower()]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [address_info(address, int(port or 0)) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records, lookups


def address_info(address: str, port: int):
    if ":" in address:
        scope = address.partition("%")[2]
        scope_id = socket.if_nametoindex(scope) if scope else 0
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, scope_id))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


@pytest.fixture(scope="module")
def relay(tiny_settings, tiny_engine, tmp_path_factory):
    """A loopback file server the API may reach (127.0.0.2, as if it were public), and that API."""
    files = FileServer({"/ok.png": (200, {"Content-Type": "image/png"}, PNG)}, host="127.0.0.2")
    settings = tiny_settings.replace(
        fetch_allow_networks=("127.0.0.2/32",), data_dir=str(tmp_path_factory.mktemp("ssrf-more-data"))
    )
    with LiveServer.start(settings, tiny_engine) as live:
        yield live, files
    files.close()


def assert_refused(response, code: str = "url_refused", field: str = "url") -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["message"].startswith(field), body


# --- names that resolve to private addresses ----------------------------------------------

PRIVATE_ANSWERS = {
    "loopback": ["127.0.0.1"],
    "another loopback": ["127.3.4.5"],
    "cloud metadata": ["169.254.169.254"],
    "private network": ["10.1.2.3"],
    "one private among public": ["8.8.8.8", "1.1.1.1", "127.0.0.1"],
    "IPv6 loopback": ["::1"],
    "IPv4-mapped loopback": ["::ffff:127.0.0.1"],
    "NAT64 of the metadata address": ["64:ff9b::a9fe:a9fe"],
    "IPv6 unique local": ["fd00::1"],
    "IPv6 link-local with a zone": ["fe80::1%lo"],
    "unspecified": ["0.0.0.0"],
}


@pytest.mark.parametrize("answer", PRIVATE_ANSWERS, ids=list(PRIVATE_ANSWERS))
def test_a_public_looking_name_resolving_to_a_private_address_is_refused(strict_server, fake_dns, counter_v4, answer):
    records, lookups = fake_dns
    records["images.example.com"] = [PRIVATE_ANSWERS[answer]]
    before = counter_v4.count
    response = strict_server.post("/image-similarity", {"url": f"http://images.example.com:{counter_v4.port}/cat.png"})
    assert_refused(response)
    assert "images.example.com" in response.json()["message"]
    assert lookups == ["images.example.com"]
    assert counter_v4.count == before


@pytest.mark.parametrize("host", ["LocalHost", "LOCALHOST", "localhost"])
def test_hosts_file_names_for_loopback_are_refused(strict_server, counter_v4, host):
    before = counter_v4.count
    assert_refused(strict_server.post("/image-similarity", {"url": f"http://{host}:{counter_v4.port}/"}))
    assert counter_v4.count == before


def test_dns_rebinding_gets_no_second_lookup(relay, fake_dns, counter_v4):
    """The name answers 127.0.0.2 (allowed) once, then 127.0.0.1: the fetch uses the first answer only."""
    live, files = relay
    records, lookups = fake_dns
    records["rebind.example.com"] = [["127.0.0.2"], ["127.0.0.1"]]
    port = files.httpd.server_address[1]
    before, hits = counter_v4.count, len(files.hits)
    response = live.post("/image-similarity", {"url": f"http://rebind.example.com:{port}/ok.png"})
    assert response.status_code == 200, response.text
    assert lookups == ["rebind.example.com"]
    assert len(files.hits) == hits + 1
    assert counter_v4.count == before


# --- redirect chains ----------------------------------------------------------------------


def chain(files: FileServer, name: str, hops: int, target: str) -> str:
    """``hops`` redirects on the allowed server, the last one to ``target``; returns the first URL."""
    for hop in range(hops):
        location = f"/{name}/{hop + 1}" if hop + 1 < hops else target
        files.routes[f"/{name}/{hop}"] = (302 if hop % 2 else 301, {"Location": location}, b"")
    return f"{files.base}/{name}/0"


REDIRECT_TARGETS = {
    "loopback": "http://127.0.0.1:{port}/",
    "loopback by name": "http://localhost:{port}/",
    "loopback, scheme-relative": "//127.0.0.1:{port}/x",
    "loopback as a decimal number": "http://2130706433:{port}/",
    "loopback in octal": "http://0177.0.0.1:{port}/",
    "IPv4-mapped loopback": "http://[::ffff:127.0.0.1]:{port}/",
    "cloud metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "metadata by name": "http://metadata.example.com/latest/meta-data/",
    "file": "file:///etc/passwd",
    "ftp": "ftp://127.0.0.1:{port}/",
    "gopher": "gopher://127.0.0.1:{port}/_GET%20/",
    "credentials": "http://user:pw@127.0.0.2:{files_port}/ok.png",
    "zone id": "http://[fe80::1%25lo]:{port}/",
    "unusual port on a public name": "http://public.example.com:25/",
}


@pytest.mark.parametrize("target", REDIRECT_TARGETS, ids=list(REDIRECT_TARGETS))
def test_a_redirect_chain_ending_on_a_refused_url_is_stopped_there(relay, fake_dns, counter_v4, target):
    live, files = relay
    records, _ = fake_dns
    records["metadata.example.com"] = [["169.254.169.254"]]
    records["public.example.com"] = [["8.8.8.8"]]
    location = REDIRECT_TARGETS[target].format(port=counter_v4.port, files_port=files.httpd.server_address[1])
    first = chain(files, f"to-{abs(hash(target))}", hops=4, target=location)
    before, hits = counter_v4.count, len(files.hits)
    assert_refused(live.post("/image-similarity", {"url": first}))
    assert len(files.hits) == hits + 4  # every allowed hop was followed, the refused one was not
    assert counter_v4.count == before


def test_a_redirect_to_a_malformed_location_is_a_4xx(relay):
    live, files = relay
    first = chain(files, "malformed", hops=2, target="http://[::1")
    assert_refused(live.post("/image-similarity", {"url": first}), code="url_unreachable")


# --- schemes, credentials, zone ids, ports -------------------------------------------------

REFUSED_URLS = [
    # other schemes, to the counter
    "gopher://127.0.0.1:{port}/_SET%20key%20value",
    "dict://127.0.0.1:{port}/info",
    "ldap://127.0.0.1:{port}/",
    "sftp://127.0.0.1:{port}/",
    "tftp://127.0.0.1:{port}/x",
    "jar:http://127.0.0.1:{port}/x.jar!/",
    "netdoc:///etc/passwd",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "file:/etc/passwd",
    "data:image/png;base64,iVBORw0KGgo=",
    # credentials, including ones that try to confuse the parser about the host
    "http://user@127.0.0.1:{port}/",
    "http://:pw@127.0.0.1:{port}/",
    "http://user:pw@127.0.0.1:{port}/",
    "http://8.8.8.8@127.0.0.1:{port}/",
    "http://8.8.8.8:80@127.0.0.1:{port}/",
    # other spellings of loopback
    "http://0177.0.0.1:{port}/",
    "http://127.000.000.001:{port}/",
    "http://0x7f.1:{port}/",
    "http://[0:0:0:0:0:ffff:7f00:1]:{port}/",
    "http://[::127.0.0.1]:{port}/",
    "http://127.0.0.1.:{port}/",
    # unusual ports on a loopback or private address
    "http://127.0.0.1:22/",
    "http://10.0.0.1:6379/",
    "http://[::1]:11211/",
]


@pytest.mark.parametrize("template", REFUSED_URLS)
def test_scheme_credential_and_address_tricks_are_refused(strict_server, counter_v4, template):
    before = counter_v4.count
    response = strict_server.post("/image-similarity", {"url": template.format(port=counter_v4.port)})
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {"url_refused", "url_unreachable"}, response.json()
    assert counter_v4.count == before


@pytest.mark.parametrize(
    "template", ["http://[::1%25lo]:{port}/", "http://[::1%lo]:{port}/", "http://[fe80::1%251]:{port}/"]
)
def test_ipv6_zone_ids_are_refused_without_a_connection(strict_server, counter_v6, template):
    before = counter_v6.count
    response = strict_server.post("/image-similarity", {"url": template.format(port=counter_v6.port)})
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {"url_refused", "invalid_url"}, response.json()
    assert counter_v6.count == before


@pytest.mark.parametrize("port", [21, 22, 25, 3306, 6379, 9200, 11211, 2375, 65535])
def test_unusual_ports_on_public_hosts_are_refused(strict_server, fake_dns, port):
    """Refused before any connection: the address is public, so a connection would leave the machine."""
    records, lookups = fake_dns
    records["public.example.com"] = [["8.8.8.8"]]
    response = strict_server.post("/image-similarity", {"url": f"http://public.example.com:{port}/a.png"})
    assert_refused(response)
    assert f"port {port}" in response.json()["message"]
    assert lookups == ["public.example.com"]


def test_an_allowed_network_may_use_any_port(relay):
    """``fetch_allow_networks`` (local tests and development) is not limited to the usual ports."""
    live, files = relay
    assert files.httpd.server_address[1] not in (80, 443, 8080, 8443)
    assert live.post("/image-similarity", {"url": files.base + "/ok.png"}).status_code == 200


def test_a_refused_url_in_a_library_add_carries_status_minus_one(relay, counter_v4):
    live, _ = relay
    assert live.post("/libraries", {"name": "ssrf_more"}).status_code == 201
    before = counter_v4.count
    response = live.post("/libraries/ssrf_more/images", {"url": f"http://localhost:{counter_v4.port}/"})
    assert_refused(response)
    assert response.json()["status"] == -1
    assert counter_v4.count == before


def test_the_counter_counts(counter_v4):
    """The socket the refusals are checked against does see a real connection."""
    before = counter_v4.count
    socket.create_connection(("127.0.0.1", counter_v4.port), timeout=2).close()
    deadline = time.monotonic() + 5
    while counter_v4.count == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counter_v4.count == before + 1
