"""The local server command, started as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(process: subprocess.Popen, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url + "/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not come up")


def test_smoke_mode_serves_real_size_model_and_says_it_is_random(tmp_path):
    process, url = start("--smoke", "--data-dir", str(tmp_path))
    try:
        wait_until_up(process, url)
        answer = httpx.post(url + "/image-similarity", json={"img": b64(image_bytes(1))}, timeout=60).json()
        assert len(answer["result"]) == 512
        assert "RANDOM-WEIGHTS" in answer["model_version"]
        assert "RANDOM-WEIGHTS" in httpx.get(url + "/ping").json()["model_version"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_checkpoint_flags_load_the_given_weights(tiny_settings, tmp_path):
    process, url = start(
        "--model",
        tiny_settings.model,
        "--pretrained",
        "my-tag",
        "--weights",
        tiny_settings.weights,
        "--model-config",
        tiny_settings.model_config,
        "--data-dir",
        str(tmp_path),
    )
    try:
        wait_until_up(process, url)
        assert httpx.get(url + "/ping").json()["model_version"] == "tiny-test-clip/my-tag"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_offline_without_weights_says_so_in_one_line(tmp_path):
    process, _ = start("--data-dir", str(tmp_path), env_extra={"HF_HOME": str(tmp_path / "hf")})
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "--weights" in errors[0] and "--smoke" in errors[0]
    assert "Traceback" not in stderr
