"""The local server command, started as a user starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from runtime.errors import SettingsError
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    env = {name: value for name, value in env.items() if value != "" or not name.startswith("HF_")}
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


def refused(*args: str, env_extra: dict | None = None) -> str:
    """Runs ``serve`` expecting a refusal: exit code 2, no traceback, one ``error:`` line; returns it."""
    process, _ = start(*args, env_extra=env_extra)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.slow
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
        stdout, _ = process.communicate(timeout=30)
    assert f"Image Similarity API: {url}" in stdout
    assert f"API Explorer:         {url}/api-explorer" in stdout


@pytest.mark.slow
def test_checkpoint_flags_load_the_given_weights(tiny_settings, tmp_path):
    process, url = start(
        "--model",
        tiny_settings.model,
        "--pretrained",
        "my-tag",
        "--weights",
        tiny_settings.weights,
        "--model-config",
        tiny_settings.model_config_path,
        "--data-dir",
        str(tmp_path),
    )
    try:
        wait_until_up(process, url)
        assert httpx.get(url + "/ping").json()["model_version"] == "tiny-test-clip/my-tag"
    finally:
        process.terminate()
        process.communicate(timeout=30)  # reads and closes the pipes


@pytest.mark.slow
def test_offline_without_weights_says_so_in_one_line(tmp_path):
    error = refused("--data-dir", str(tmp_path), env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert "--weights" in error and "--smoke" in error
    assert "HF_HUB_OFFLINE" in error


@pytest.mark.slow
def test_an_unreachable_hub_is_found_before_any_download(tmp_path):
    """Without HF_HUB_OFFLINE: one connection attempt, not ~50 s of hub retries."""
    hub = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "", "HF_ENDPOINT": hub}
    error = refused("--data-dir", str(tmp_path), env_extra=env)
    assert "not in the local cache" in error and "127.0.0.1" in error and "cannot be reached" in error
    assert "--smoke" in error


@pytest.mark.slow
def test_cuda_without_a_gpu_names_the_real_reason(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    error = refused("--smoke", "--device", "cuda", "--data-dir", str(tmp_path))
    assert "no CUDA GPU" in error and "--device cpu" in error
    assert "weights" not in error


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IMSIM_EXPLORER": "ture"}, "error: IMSIM_EXPLORER='ture': should be true/false"),
        ({"IMSIM_ENGINE": "onxx"}, "error: IMSIM_ENGINE='onxx': should be 'auto', 'torch', 'onnx' or 'sagemaker'"),
        ({"IMSIM_EXPLORR": "false"}, "error: IMSIM_EXPLORR: not a setting (did you mean IMSIM_EXPLORER?)"),
        ({"IMSIM_STORE": "s3vectors"}, "error: IMSIM_STORE=s3vectors needs IMSIM_VECTOR_BUCKET and IMSIM_REGIS"),
        ({"IMSIM_MAX_BATCH": "0"}, "error: IMSIM_MAX_BATCH='0': should be greater than or equal to 1"),
    ],
)
def test_the_environment_is_checked_before_anything_loads(tmp_path, env, expected):
    assert refused("--smoke", "--data-dir", str(tmp_path), env_extra=env).startswith(expected)


def test_a_bad_flag_value_is_named_as_the_flag(tmp_path):
    error = refused("--allow-network", "notacidr", "--data-dir", str(tmp_path))
    assert error == "error: --allow-network='notacidr': should be a CIDR network, like 127.0.0.1/32 or 10.0.0.0/8"


def test_a_data_directory_that_cannot_be_written_is_refused_at_start(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    error = refused("--smoke", "--data-dir", str(blocker / "data"))
    assert error.startswith(f"error: --data-dir='{blocker / 'data'}'") and "not a directory" in error


@pytest.mark.parametrize("folder", ["/proc/imsim-data", "/sys/imsim-data"])
def test_a_data_directory_under_proc_or_sys_is_refused_at_start(folder):
    """Root passes every permission check there, and then cannot make a file: serve must say so at start."""
    error = refused("--smoke", "--data-dir", folder)
    assert error.startswith(f"error: --data-dir='{folder}': cannot be written"), error


def test_a_port_in_use_is_refused_at_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = refused("--smoke", "--data-dir", str(tmp_path), "--port", str(port))
    assert error.startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen there")


def test_an_unknown_choice_is_one_line():
    error = refused("--device", "gpu")
    assert "invalid choice: 'gpu'" in error and "--help" in error


def test_help_shows_defaults_and_points_to_the_settings():
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "(default: 8080)" in text and "(default: ViT-B-32; env IMSIM_MODEL)" in text
    assert "(default: ./data; env IMSIM_DATA_DIR)" in text
    assert "docs/api.md#limits-and-settings" in text


def test_listening_beyond_loopback_needs_an_api_key():
    error = refused("--host", "0.0.0.0", "--smoke")
    assert error.startswith("error: --host 0.0.0.0: not a loopback address, so other machines can reach the API")
    assert "give --api-key (or IMSIM_API_KEY)" in error and "or --insecure-no-auth" in error


def test_insecure_no_auth_serves_beyond_loopback_and_says_so(tiny_settings, tmp_path):
    port = free_port()
    command = [
        *(sys.executable, "-m", "runtime", "serve", "--host", "0.0.0.0", "--port", str(port), "--insecure-no-auth"),
        *("--model", tiny_settings.model, "--pretrained", tiny_settings.pretrained, "--device", "cpu"),
        *("--weights", tiny_settings.weights, "--model-config", tiny_settings.model_config_path),
        *("--data-dir", str(tmp_path), "--log-level", "warning"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("IMSIM_API_KEY", None)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stderr.readline()  # printed before the model loads; the old serve exited 2 here
        assert first.startswith("warning: --insecure-no-auth: listening on 0.0.0.0 without an API key"), first
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while process.poll() is None:
                try:
                    answer = client.get("/libraries")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert process.poll() is None, process.stderr.read()
            assert answer.status_code == 200, answer.text  # no key asked
    finally:
        process.terminate()
        process.wait(timeout=60)
        process.stderr.close()


def test_only_loopback_and_the_sagemaker_container_go_without_a_key():
    from runtime.cli.serve import check_key_beyond_loopback
    from runtime.settings import Settings

    for host in ("127.0.0.1", "127.5.0.1", "::1", "localhost"):
        check_key_beyond_loopback(Settings(), host, sagemaker=False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "my-laptop.local"):
        with pytest.raises(SettingsError, match="not a loopback address"):
            check_key_beyond_loopback(Settings(), host, sagemaker=False)
        check_key_beyond_loopback(Settings(api_key="k" * 20), host, sagemaker=False)
        assert "--insecure-no-auth" in (
            check_key_beyond_loopback(Settings(), host, sagemaker=False, insecure=True) or ""
        )
    check_key_beyond_loopback(Settings(), "0.0.0.0", sagemaker=True)  # only SageMaker reaches it (IAM-signed)
