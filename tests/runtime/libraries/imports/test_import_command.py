"""``python -m runtime import``: from a folder directly into a data directory, and against a running API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.import_command import source_of
from tests.fakes.images import image_bytes
from tests.fakes.servers import LiveServer

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def folder(tmp_path) -> Path:
    """Six pictures in nested folders, a text file (ignored), and a "PNG" that is not one."""
    root = tmp_path / "pictures"
    for n in range(6):
        path = root / ("summer" if n % 2 else "winter") / "day" / f"p{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(n))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def model_flags(settings) -> list[str]:
    return [
        *("--model", settings.model, "--pretrained", settings.pretrained, "--device", "cpu"),
        *("--weights", settings.weights, "--model-config", settings.model_config_path),
    ]


def run_import(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "import", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_folder_import_directly_then_again(folder, tiny_settings, tmp_path):
    data, results = tmp_path / "data", tmp_path / "failures.jsonl"
    args = [str(folder), "--library", "album", "--create", "--no-dedup", "--data-dir", str(data)]
    first = run_import(*args, "--results", str(results), *model_flags(tiny_settings))
    assert first.returncode == 1, first.stderr  # one item failed
    assert "added 6" in first.stdout and "failed 1" in first.stdout
    assert "img/s" in first.stderr  # tqdm's rate
    failures = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(f["item"], f["field"], f["code"]) for f in failures] == [("broken.png", "img", "not_an_image")]
    again = run_import(*args, "--results", str(results), *model_flags(tiny_settings))
    assert "added 0" in again.stdout and "skipped 6" in again.stdout, again.stdout


@pytest.mark.slow
def test_import_into_a_missing_library_says_so(folder, tiny_settings, tmp_path):
    done = run_import(str(folder), "--library", "nowhere", "--data-dir", str(tmp_path), *model_flags(tiny_settings))
    assert done.returncode == 2
    assert "library 'nowhere' does not exist" in done.stderr


def test_folder_import_against_a_running_api(folder, tiny_settings, tiny_engine, tmp_path):
    results = tmp_path / "failures.jsonl"
    with LiveServer.start(tiny_settings.replace(data_dir=str(tmp_path / "data")), tiny_engine) as live:
        args = [
            str(folder),
            "--library",
            "remote",
            "--create",
            "--no-dedup",
            "--api",
            live.url,
            "--results",
            str(results),
        ]
        from runtime.cli import main

        assert main(["import", *args]) == 1
        assert live.client.get("/libraries/remote").json()["image_count"] == 6
        assert live.client.get("/libraries/remote/images/summer:day:p1.png").status_code == 200
        failures = [json.loads(line) for line in results.read_text().splitlines()]
        assert [(f["item"], f["code"]) for f in failures] == [("broken.png", "not_an_image")]
        assert main(["import", *args]) == 1  # the same failure again; the six are skipped
        assert live.client.get("/libraries/remote").json()["image_count"] == 6


def test_sources_are_recognised(folder, tmp_path):
    (tmp_path / "list.jsonl").write_text("")
    assert source_of(str(folder)) == {"folder": str(folder.resolve())}
    assert source_of(str(tmp_path / "list.jsonl")) == {"manifest": str((tmp_path / "list.jsonl").resolve())}
    assert source_of("s3://bucket/prefix/") == {"source": "s3://bucket/prefix/"}
    assert source_of("s3://bucket/list.jsonl") == {"manifest": "s3://bucket/list.jsonl"}
    assert source_of("https://example.com/list.jsonl") == {"manifest": "https://example.com/list.jsonl"}
