"""A long manifest through a real server: its peak RSS, and how fast and how big an import's status is.

    python -m bench.bench_import_manifest --lines 1000000        # peak RSS, status latency while it runs
    python -m bench.bench_import_manifest --long-urls 20         # status size of 20 lines of 10 MB URLs
    python -m bench.bench_import_manifest --long-urls 200 --url-bytes 60000 --no-ids   # failures named by their URL

Every --lines line has an id the rules refuse, so each is a failure found before anything is fetched: the run
measures the import's own bookkeeping (listing, results, status), not the model. The tiny test model.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ServerProcess, model_settings, parser, server_args

LONG_URL_BYTES = 10 * 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def failing_lines(count: int) -> bytes:
    return b"".join(
        json.dumps({"url": f"http://127.0.0.1:9/{n}.png", "id": f"bad id {n}"}).encode() + b"\n" for n in range(count)
    )


def long_url_lines(count: int, url_bytes: int, ids: bool = True) -> bytes:
    """Lines of long URLs; without ids, a failure is named by its URL."""
    url = "http://127.0.0.1:9/" + "a" * url_bytes
    return b"".join(
        json.dumps({"url": f"{url}{n}", **({"id": f"long-{n}"} if ids else {})}).encode() + b"\n" for n in range(count)
    )


def run(manifest: bytes, settings) -> dict:
    from tests.fakes.servers import FileServer

    files = FileServer({"/manifest.jsonl": (200, {}, manifest)})
    env = {"IMSIM_MAX_MANIFEST_BYTES": str(1024**3), "IMSIM_FETCH_TIMEOUT_S": "300"}
    server = ServerProcess(*server_args(settings), "--allow-network", "127.0.0.1/32", env=env)
    try:
        with server, httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/libraries", json={"name": "bench"}).raise_for_status()
            started = time.perf_counter()
            answer = client.post("/libraries/bench/imports", json={"manifest": f"{files.base}/manifest.jsonl"})
            answer.raise_for_status()
            status_url = f"/libraries/bench/imports/{answer.json()['import_id']}"
            latencies: list[float] = []
            sizes: list[int] = []
            while True:
                before = time.perf_counter()
                got = client.get(status_url)
                latencies.append(time.perf_counter() - before)
                sizes.append(len(got.content))
                job = got.json()
                if job["status"] != "running":
                    break
                time.sleep(0.5)
            return {
                "seconds": time.perf_counter() - started,
                "peak_rss_mb": peak_rss(server.process.pid) / 1e6,
                "status_p50_ms": statistics.median(latencies) * 1000,
                "status_max_ms": max(latencies) * 1000,
                "status_polls": len(latencies),
                "status_max_bytes": max(sizes),
                "counts": job["counts"],
                "status": job["status"],
                "error": job["error"],
            }
    finally:
        files.close()


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, default=0, help="a manifest of this many failing lines")
    p.add_argument("--long-urls", type=int, default=0, help="a manifest of this many lines of long URLs")
    p.add_argument("--url-bytes", type=int, default=LONG_URL_BYTES, help="how long (10 MB)")
    p.add_argument("--no-ids", action="store_true", help="long-URL lines without ids")
    args = p.parse_args()
    settings = model_settings(smoke=True)
    settings = settings.replace(data_dir=tempfile.mkdtemp(prefix="bench-manifest-"))
    if args.lines:
        print(f"{args.lines:,} lines:", json.dumps(run(failing_lines(args.lines), settings)))
    if args.long_urls:
        result = run(long_url_lines(args.long_urls, args.url_bytes, not args.no_ids), settings)
        print(f"{args.long_urls} lines of {args.url_bytes:,}-byte URLs:", json.dumps(result))
    sizes = sum(path.stat().st_size for path in Path(settings.data_dir).rglob("*") if path.is_file())
    print(f"data directory: {sizes / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
