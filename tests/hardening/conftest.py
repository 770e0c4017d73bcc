"""The server the hardening tests attack: ``python -m runtime serve`` with the tiny model, in its own
process, so its memory can be read from ``/proc/<pid>/status`` and its connections are real."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from bench.common import ServerProcess, server_args

FETCH_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
KEEP_ALIVE_TIMEOUT_S = 1.0
MAX_IN_FLIGHT = 8
ANSWER_DEADLINE_S = 2.0
"""Every hostile request is answered within 2 s: a functional deadline (a client's patience, and
what keeps one attacker from holding a worker), not a benchmark; on 2 busy cores the slowest
case takes ~0.6 s."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~2 s (server process, large inputs)")


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since the last ``reset_peak``) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> int:
    """Resets the process's VmHWM to its VmRSS (Linux: clear_refs 5) and returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory(pid)["VmRSS"]


@pytest.fixture(scope="session")
def attacked_server(tiny_settings, tmp_path_factory):
    """One server process for every hardening module (start-up costs ~10 s on 2 cores)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/<pid>/status")
    settings = tiny_settings.replace(data_dir=str(tmp_path_factory.mktemp("attacked-data")))
    env = {
        "IMSIM_FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S),
        "IMSIM_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "IMSIM_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "IMSIM_KEEP_ALIVE_TIMEOUT_S": str(KEEP_ALIVE_TIMEOUT_S),
        "IMSIM_MAX_INFLIGHT_REQUESTS": str(MAX_IN_FLIGHT),
    }
    server = ServerProcess(*server_args(settings), "--allow-network", "127.0.0.1/32", env=env)
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield server, client
