"""The URL fetcher refuses non-public addresses without ever connecting to them."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from runtime.inputs.fetch import is_public
from tests.fakes.images import image_bytes
from tests.fakes.servers import ConnectionCounter, FileServer, LiveServer


@pytest.fixture(scope="module")
def counter_v4():
    counter = ConnectionCounter("0.0.0.0")  # every local IPv4 address: 127.x, 0.0.0.0...
    yield counter
    counter.close()


@pytest.fixture(scope="module")
def counter_v6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    counter = ConnectionCounter("::", family=socket.AF_INET6)
    yield counter
    counter.close()


REFUSED_V4 = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://0.0.0.0:{port}/",
    "http://2130706433:{port}/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001:{port}/",  # ... as hex
    "http://127.1:{port}/",  # ... abbreviated
    "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
    "https://127.0.0.1:{port}/cat.jpg",
]


@pytest.mark.parametrize("template", REFUSED_V4)
def test_loopback_forms_are_refused_without_a_connection(strict_server, counter_v4, template):
    before = counter_v4.count
    response = strict_server.post("/image-similarity", {"url": template.format(port=counter_v4.port)})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "url_refused"
    assert "url" in response.json()["message"]
    assert counter_v4.count == before


def test_ipv6_loopback_is_refused_without_a_connection(strict_server, counter_v6):
    response = strict_server.post("/image-similarity", {"url": f"http://[::1]:{counter_v6.port}/"})
    assert response.json()["code"] == "url_refused"
    assert counter_v6.count == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # the cloud's instance metadata service
        "http://[fd00:ec2::254]/latest/meta-data/",  # its IPv6 address
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://172.16.0.1/a.png",
        "http://100.64.0.1/a.png",  # carrier-grade NAT
        "http://224.0.0.1/a.png",  # multicast
        "http://240.0.0.1/a.png",  # reserved
        "http://[fe80::1%25eth0]/a.png",  # zone id
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of 169.254.169.254
    ],
)
def test_private_and_special_addresses_are_refused(strict_server, url):
    response = strict_server.post("/image-similarity", {"url": url})
    assert response.status_code == 400
    assert response.json()["code"] == "url_refused", response.json()


def test_redirect_to_a_refused_address_is_not_followed(tiny_settings, tiny_engine, counter_v4):
    """The first server is allowed (127.0.0.2); it redirects to 127.0.0.1, which is not."""
    target = f"http://127.0.0.1:{counter_v4.port}/secret"
    files = FileServer(
        {"/jump": (302, {"Location": target}, b""), "/ok.png": (200, {}, image_bytes(1))}, host="127.0.0.2"
    )
    before = counter_v4.count
    try:
        with LiveServer.start(tiny_settings.replace(fetch_allow_networks=("127.0.0.2/32",)), tiny_engine) as live:
            assert live.post("/image-similarity", {"url": files.base + "/ok.png"}).status_code == 200
            response = live.post("/image-similarity", {"url": files.base + "/jump"})
    finally:
        files.close()
    assert response.json()["code"] == "url_refused"
    assert files.hits == ["/ok.png", "/jump"]
    assert counter_v4.count == before


def test_redirect_within_allowed_hosts_is_followed(server):
    files = FileServer(
        {
            "/a": (301, {"Location": "/b"}, b""),
            "/b": (302, {"Location": "/img.png"}, b""),
            "/img.png": (200, {}, image_bytes(4)),
        }
    )
    try:
        response = server.post("/image-similarity", {"url": files.base + "/a"})
    finally:
        files.close()
    assert response.status_code == 200, response.text
    assert files.hits == ["/a", "/b", "/img.png"]


def test_redirect_loops_stop(server):
    files = FileServer({"/loop": (302, {"Location": "/loop"}, b"")})
    try:
        response = server.post("/image-similarity", {"url": files.base + "/loop"})
    finally:
        files.close()
    assert response.json()["code"] == "url_unreachable"
    assert "redirects" in response.json()["message"]
    assert len(files.hits) == 6  # the first request and five redirects


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:0001::", False),  # 6to4 wrapping 127.0.0.1
        ("::", False),
        ("ff02::1", False),
        ("fc00::1", False),
    ],
)
def test_public_address_rule(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_a_host_name_longer_than_dns_allows_is_unreachable_at_once(server):
    response = server.post("/image-similarity", {"url": "http://" + "a" * 254 + "/cat.jpg"})
    assert response.status_code == 400
    assert response.json()["code"] == "url_unreachable"
    assert "254 characters" in response.json()["message"]
