"""Knowing at once whether pretrained weights can be had: the probe of the download host."""

from __future__ import annotations

import socket

from runtime.engines.pretrained import download_host, reachable
from tests.fakes.servers import free_port


def test_a_listening_host_is_reachable_and_a_closed_port_is_not():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert reachable("127.0.0.1", listener.getsockname()[1], timeout=2)
    assert not reachable("127.0.0.1", free_port(), timeout=2)
    assert not reachable("no-such-host.invalid", 443, timeout=2)


def test_the_probe_goes_where_the_download_would(monkeypatch):
    hub = {"hf_hub": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"}
    for name in ("HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert download_host(hub) == ("huggingface.co", 443)
    assert download_host({"url": "http://example.org/w.pt"}) == ("example.org", 80)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9999")
    assert download_host(hub) == ("127.0.0.1", 9999)
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    assert download_host(hub) == ("proxy.internal", 3128)
