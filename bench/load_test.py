"""Load, durability and crash test of the local server (loopback only, bounded in count and time).

    .venv/bin/python bench/load_test.py [--clients 16] [--seconds 60] [--smoke]

1. Baseline: one client alone for a few seconds (the latency the ratios compare against).
2. Load: ``--clients`` concurrent clients for ``--seconds``, each sending a mix back to back:
   image vectors, image/text pairs, adds to a library and searches of it. Every 5xx and every
   dropped connection is counted (both must be 0); latency percentiles per kind of request.
   Afterwards every acknowledged add is read back (``GET /libraries/{name}/images/{id}``, metadata
   compared) and the library's image count must equal the number of adds acknowledged.
3. Crash: clients add images as fast as they can; after ``crash_after`` acknowledged adds the
   server gets SIGKILL in the middle of the burst; a new server on the same data folder must hold
   every acknowledged add (``writes lost`` must be 0).

The model is ViT-B-32 at full size with random weights (``python -m runtime serve --smoke``);
``--smoke`` here means the tiny test model and a seconds-long run (tests/test_load_short.py).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import ServerProcess, model_settings, parser, print_table, server_args
from tests.fakes.images import b64, image_bytes

KINDS = ("vector", "pair", "add", "search")
SHED = "shed"  # 503 "overloaded" answers (the in-flight limit), kept apart from the kinds above
MIX = ("vector", "add", "search", "vector", "pair", "add", "search", "vector")  # one client's cycle
REQUEST_TIMEOUT_S = 120.0


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in (*KINDS, SHED)})
    statuses: Counter = field(default_factory=Counter)
    dropped: int = 0
    acknowledged: dict[str, dict] = field(default_factory=dict)  # id -> metadata of every add answered "added"

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """5xx answers other than the in-flight limit's deliberate 503s."""
        return sum(count for status, count in self.statuses.items() if status >= 500) - len(self.latencies[SHED])

    def all_latencies(self) -> list[float]:
        return [ms for kind in KINDS for ms in self.latencies[kind]]


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def image_pool(count: int, size: tuple[int, int]) -> list[str]:
    return [b64(image_bytes(seed, size=size, fmt="JPEG", quality=85)) for seed in range(count)]


def request_for(kind: str, client: int, seq: int, images: list[str], library: str) -> tuple[str, dict]:
    image = images[(client * 7 + seq) % len(images)]
    if kind == "vector":
        return "/image-similarity", {"img": image}
    if kind == "pair":
        return "/image-similarity", {"img_1": image, "text_2": f"a photo number {seq}"}
    if kind == "add":
        metadata = {"client": client, "seq": seq}
        body = {"img": image, "id": f"c{client}-{seq}", "metadata": metadata, "dedup": False}
        return f"/libraries/{library}/images", body
    if seq % 2:
        return f"/libraries/{library}/search", {"text": "a red square", "top_k": 5}
    return f"/libraries/{library}/search", {"img": image, "top_k": 5}


async def client_loop(
    http: httpx.AsyncClient,
    client: int,
    stop_at: float,
    images: list[str],
    library: str,
    result: LoadResult,
    kinds: tuple[str, ...] = MIX,
    stop_on_drop: bool = False,
) -> None:
    """One client: requests back to back until ``stop_at`` (or its first dropped connection)."""
    seq = 0
    while time.monotonic() < stop_at:
        kind = kinds[seq % len(kinds)]
        path, body = request_for(kind, client, seq, images, library)
        seq += 1
        start = time.perf_counter()
        try:
            response = await http.post(path, json=body)
        except httpx.TransportError:
            result.dropped += 1
            if stop_on_drop:
                return
            continue
        elapsed = (time.perf_counter() - start) * 1000
        result.statuses[response.status_code] += 1
        if response.status_code == 503 and response.json().get("code") == "overloaded":
            result.latencies[SHED].append(elapsed)
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))  # as a well-behaved client does
            continue
        result.latencies[kind].append(elapsed)
        if kind == "add" and response.status_code == 200 and response.json().get("status") == 1:
            result.acknowledged[body["id"]] = body["metadata"]


async def run_load(
    url: str, clients: int, seconds: float, images: list[str], library: str, first_client: int = 0
) -> LoadResult:
    """``clients`` concurrent clients sending the mix for ``seconds``."""
    result = LoadResult()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(
            *(client_loop(http, first_client + c, stop_at, images, library, result) for c in range(clients))
        )
        result.seconds = time.monotonic() - started
    return result


def missing_adds(url: str, library: str, acknowledged: dict[str, dict]) -> list[str]:
    """The acknowledged adds the server does not return, with the metadata they were added with."""
    missing = []
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        for image_id, metadata in acknowledged.items():
            response = http.get(f"/libraries/{library}/images/{image_id}")
            if response.status_code != 200 or response.json().get("metadata") != metadata:
                missing.append(image_id)
    return missing


def image_count(url: str, library: str) -> int:
    response = httpx.get(f"{url}/libraries/{library}", timeout=REQUEST_TIMEOUT_S)
    response.raise_for_status()
    return response.json()["image_count"]


def create_library(url: str, name: str) -> None:
    response = httpx.post(f"{url}/libraries", json={"name": name}, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 201, response.text


@dataclass
class CrashResult:
    acknowledged: int
    in_flight_at_kill: int
    count_after_restart: int
    lost: list[str]


async def add_until_killed(
    server: ServerProcess, clients: int, images: list[str], library: str, crash_after: int
) -> LoadResult:
    """Clients add images back to back; SIGKILL the server once ``crash_after`` adds are acknowledged."""
    result = LoadResult()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def killer() -> None:
        while len(result.acknowledged) < crash_after and server.process.poll() is None:
            await asyncio.sleep(0.005)
        server.process.kill()  # SIGKILL: no shutdown handler runs, nothing is flushed

    async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        stop_at = time.monotonic() + 600  # a bound; the kill ends the burst long before
        adders = (
            client_loop(http, c, stop_at, images, library, result, kinds=("add",), stop_on_drop=True)
            for c in range(clients)
        )
        await asyncio.gather(killer(), *adders)
    server.process.wait(timeout=30)
    return result


def crash_test(
    flags: list[str], clients: int, images: list[str], crash_after: int, env: dict | None = None
) -> CrashResult:
    library = "crash"
    server = ServerProcess(*flags, env=env)
    server.wait_ready()
    try:
        create_library(server.url, library)
        burst = asyncio.run(add_until_killed(server, clients, images, library, crash_after))
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert server.process.returncode == -9, f"the server was not killed by SIGKILL ({server.process.returncode})"
    with ServerProcess(*flags, env=env) as restarted:
        lost = missing_adds(restarted.url, library, burst.acknowledged)
        count = image_count(restarted.url, library)
    return CrashResult(len(burst.acknowledged), burst.dropped, count, lost)


def summary_rows(label: str, clients: int, result: LoadResult, baseline_p50: float) -> list[list]:
    rows = []
    for kind in (*KINDS, "all", SHED):
        samples = result.all_latencies() if kind == "all" else result.latencies[kind]
        if not samples:
            continue
        p50 = percentile(samples, 50)
        rows.append(
            [
                label,
                clients,
                kind,
                len(samples),
                p50,
                percentile(samples, 95),
                percentile(samples, 99),
                f"{p50 / baseline_p50:.2f}x" if baseline_p50 else "-",
            ]
        )
    return rows


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--clients", type=int, default=16)
    cli.add_argument("--seconds", type=float, default=60.0)
    cli.add_argument("--crash-clients", type=int, default=8)
    cli.add_argument("--crash-after", type=int, default=40, help="acknowledged adds before the SIGKILL")
    cli.add_argument("--max-inflight", type=int, help="the server's max_inflight_requests (default: its own)")
    cli.add_argument("--no-crash", action="store_true", help="skip the SIGKILL phase")
    args = cli.parse_args()
    clients = 4 if args.smoke else args.clients
    seconds = 3.0 if args.smoke else args.seconds
    baseline_seconds = 2.0 if args.smoke else 10.0
    crash_after = 10 if args.smoke else args.crash_after

    settings = model_settings(args.smoke).replace(data_dir=tempfile.mkdtemp(prefix="load-data-"))
    flags = server_args(settings)
    images = image_pool(32, (320, 240) if args.smoke else (640, 480))

    env = {"IMSIM_MAX_INFLIGHT_REQUESTS": str(args.max_inflight)} if args.max_inflight else None
    with ServerProcess(*flags, env=env) as server:
        create_library(server.url, "load")
        warm_up = asyncio.run(run_load(server.url, 2, 2.0, images, "load", first_client=1000))
        baseline = asyncio.run(run_load(server.url, 1, baseline_seconds, images, "load", first_client=2000))
        load = asyncio.run(run_load(server.url, clients, seconds, images, "load"))
        acknowledged = {**warm_up.acknowledged, **baseline.acknowledged, **load.acknowledged}
        lost_under_load = missing_adds(server.url, "load", acknowledged)
        count = image_count(server.url, "load")
    crash = None if args.no_crash else crash_test(flags, args.crash_clients, images, crash_after)

    baseline_p50 = percentile(baseline.all_latencies(), 50)
    rows = summary_rows("1 client (baseline)", 1, baseline, baseline_p50)
    rows += summary_rows("load", clients, load, baseline_p50)
    print_table(
        f"Load ({settings.model_version}, {clients} clients for {load.seconds:.0f} s)",
        ["phase", "clients", "request", "count", "p50 ms", "p95 ms", "p99 ms", "p50 vs baseline"],
        rows,
    )
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(load.statuses.items()))
    print(
        f"\nload: {load.requests} requests ({load.requests / load.seconds:.1f}/s), statuses {statuses}, "
        f"shed (503 overloaded) {len(load.latencies[SHED])}, other 5xx {load.server_errors}, "
        f"dropped connections {load.dropped}"
    )
    print(
        f"load: {len(acknowledged)} adds acknowledged (warm-up and baseline included), library holds {count}, "
        f"acknowledged adds missing: {len(lost_under_load)}"
    )
    if crash:
        print(
            f"crash: SIGKILL after {crash.acknowledged} acknowledged adds ({crash.in_flight_at_kill} in flight); "
            f"after restart the library holds {crash.count_after_restart}; writes lost: {len(crash.lost)}"
        )
    failed = load.server_errors or load.dropped or lost_under_load or count != len(acknowledged)
    failed = failed or (crash is not None and crash.lost)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
