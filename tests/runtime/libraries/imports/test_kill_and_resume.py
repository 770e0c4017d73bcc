"""A real server process killed with SIGKILL (or stopped with SIGTERM) in the middle of an import:
restarted on the same data directory, it resumes the job, which completes, and no image is added twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.images import image_bytes
from tests.fakes.servers import HeldAnswers, free_port, held_images_manifest
from tests.runtime.libraries.imports.conftest import BUCKET, wait_for_end

ROOT = Path(__file__).resolve().parents[4]
COUNT = 120


def start_server(
    tiny_settings, data_dir: Path, endpoint: str, **settings: str
) -> tuple[subprocess.Popen, httpx.Client]:
    port = free_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "IMSIM_S3_ALLOWED_BUCKETS": BUCKET,
        "IMSIM_IMPORT_BATCH": "4",
        "IMSIM_IMPORT_BATCHES_IN_FLIGHT": "1",
        "HF_HUB_OFFLINE": "1",
        **{f"IMSIM_{name.upper()}": value for name, value in settings.items()},
    }
    command = [
        *(sys.executable, "-m", "runtime", "serve", "--port", str(port), "--data-dir", str(data_dir)),
        *("--model", tiny_settings.model, "--pretrained", tiny_settings.pretrained),
        *("--weights", tiny_settings.weights, "--model-config", tiny_settings.model_config_path, "--device", "cpu"),
        *("--log-level", "warning"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.get("/ping").status_code == 200:
                return process, client
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def big_pictures(s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for n in range(COUNT):
        s3.put_object(Bucket=BUCKET, Key=f"big/{n:03d}.jpg", Body=image_bytes(n, size=(640, 480), fmt="JPEG"))
    return s3_endpoint


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_server_killed_mid_import_resumes_it_and_adds_nothing_twice(big_pictures, tiny_settings, tmp_path, stop):
    s3_endpoint = big_pictures

    process, client = start_server(tiny_settings, tmp_path, s3_endpoint)
    try:
        assert client.post("/libraries", json={"name": "resumed"}).status_code == 201
        started = client.post("/libraries/resumed/imports", json={"source": f"s3://{BUCKET}/big/", "dedup": False})
        assert started.status_code == 202, started.text
        import_id = started.json()["import_id"]
        while True:  # kill it once some batches are in, long before the end
            job = client.get(f"/libraries/resumed/imports/{import_id}").json()
            if job["counts"]["processed"] >= 8 or job["status"] != "running":
                break
            time.sleep(0.01)
        os.kill(process.pid, stop)
        process.wait(timeout=60)
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert job["status"] == "running" and job["counts"]["processed"] < COUNT, "the import ended before the kill"
    record = json.loads((tmp_path / "imports" / import_id / "job.json").read_text())
    # a stopped server pauses its imports (a killed one leaves them running); it does not fail them
    assert record["status"] == ("interrupted" if stop == signal.SIGTERM else "running")

    process, client = start_server(tiny_settings, tmp_path, s3_endpoint)
    try:
        job = wait_for_end(client, "resumed", import_id)
        assert job["status"] == "succeeded", job
        assert job["counts"]["total"] == COUNT and job["counts"]["processed"] == COUNT
        # a batch committed to the store but not yet recorded when the process died is redone: already present
        assert job["counts"]["added"] + job["counts"]["already_present"] == COUNT
        assert client.get("/libraries/resumed").json()["image_count"] == COUNT
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
    with sqlite3.connect(tmp_path / "libraries.sqlite3") as db:
        ids = [row[0] for row in db.execute("SELECT id FROM images WHERE library = 'resumed'")]
    assert sorted(ids) == [f"{n:03d}.jpg" for n in range(COUNT)]  # each once, none lost


def test_sigterm_with_slow_fetches_running_exits_in_its_grace_period_and_the_restart_resumes(
    s3_endpoint, tiny_settings, tmp_path
):
    """Every image of the import is on a server that holds the fetches: the server still exits on
    SIGTERM (before anything is released), leaving the job ``interrupted``; the next start resumes it."""
    held = HeldAnswers(answer=image_bytes(3))
    manifest = held_images_manifest(held, 4)
    slow = {"fetch_allow_networks": "127.0.0.1/32", "fetch_timeout_s": "600", "import_batch": "2"}
    try:
        process, client = start_server(tiny_settings, tmp_path, s3_endpoint, **slow)
        try:
            assert client.post("/libraries", json={"name": "held"}).status_code == 201
            body = {"manifest": f"{manifest.base}/held.jsonl", "dedup": False}
            started = client.post("/libraries/held/imports", json=body)
            assert started.status_code == 202, started.text
            import_id = started.json()["import_id"]
            assert held.arrived.wait(60), "the import never fetched its images"
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)  # the old server waited for the fetches: 120 s per job
            assert not held.released.is_set()
        finally:
            client.close()
            if process.poll() is None:
                process.kill()
            process.stderr.close()
        record = json.loads((tmp_path / "imports" / import_id / "job.json").read_text())
        assert record["status"] == "interrupted", record

        held.arrived.clear()
        process, client = start_server(tiny_settings, tmp_path, s3_endpoint, **slow)
        try:
            assert held.arrived.wait(60), "the restart did not resume the import"
            assert client.get(f"/libraries/held/imports/{import_id}").json()["status"] == "running"
            held.release()
            job = wait_for_end(client, "held", import_id)
            assert job["status"] == "succeeded", job
            assert job["counts"]["added"] == 4 and client.get("/libraries/held").json()["image_count"] == 4
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=30)
            process.stderr.close()
    finally:
        held.release()
        manifest.close()
