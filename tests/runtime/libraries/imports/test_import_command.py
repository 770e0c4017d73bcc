"""``python -m runtime import``: from a folder directly into a data directory, and against a running API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.imports import source_of
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


DISTINCT = "0.9999"
"""A threshold the tiny random model's distinct test pictures stay under (they score up to 0.9994)."""


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
    assert "added 0" in again.stdout and "already present 6" in again.stdout, again.stdout


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


def picture(seed: int, fmt: str) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(image_bytes(seed))).convert("RGB")
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


PHONE_FILES = {
    "IMG_0001.HEIC": ("HEIF", 1),
    "IMG_0002.heic": ("HEIF", 2),
    "IMG_0003.heif": ("HEIF", 3),
    "shot.AVIF": ("AVIF", 4),
    "anim.gif": ("GIF", 5),
    "scan.TIF": ("TIFF", 6),
    "scan2.tiff": ("TIFF", 7),
    "DSC01.JPG": ("JPEG", 8),
    "photo.jpeg": ("JPEG", 9),
    "screen.PNG": ("PNG", 10),
    "web.WebP": ("WEBP", 11),
}


@pytest.mark.slow
def test_a_folder_of_phone_photos_imports_every_format_and_writes_nothing_in_the_working_directory(
    tiny_settings, tmp_path
):
    folder, cwd, data = tmp_path / "phone", tmp_path / "cwd", tmp_path / "data"
    folder.mkdir()
    cwd.mkdir()
    for name, (fmt, seed) in PHONE_FILES.items():
        (folder / name).write_bytes(picture(seed, fmt))
    (folder / "._IMG_0001.HEIC").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's resource fork
    (folder / "notes.txt").write_text("not an image")
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "import", str(folder), "--library", "phone", "--create", "--no-dedup"]
        + ["--data-dir", str(data), *model_flags(tiny_settings)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert f"added {len(PHONE_FILES)}," in done.stdout, done.stdout
    assert "ignored 2 (not an image name 1, hidden file 1)" in done.stdout, done.stdout
    assert "failed 0" in done.stdout and "listed in" not in done.stdout
    assert list(cwd.iterdir()) == []  # no results file, no data: the working directory is left alone


def test_flags_are_refused_before_any_work(folder, tmp_path, capsys):
    from runtime.cli import main

    (tmp_path / "one.jpg").write_bytes(image_bytes(1, fmt="JPEG"))
    refused = {
        "--threshold: must be between 0 and 1": [str(folder), "--library", "a", "--threshold", "2"],
        "--library: 'bad name!' is not a library name": [str(folder), "--library", "bad name!"],
        "is one image; give its folder": [str(tmp_path / "one.jpg"), "--library", "a"],
        "--model: with --api the model is the server's": [
            str(folder),
            "--library",
            "a",
            "--api",
            "http://x",
            "--model",
            "m",
        ],
        "give the import's id": ["status"],
        "--sigv4, --api-key and --region go with --api": [str(folder), "--library", "a", "--sigv4"],
    }
    for message, args in refused.items():
        assert main(["import", *args, "--data-dir", str(tmp_path / "data")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error and error.count("\n") == 1, error
    assert not (tmp_path / "data").exists()  # nothing was created, no model was loaded


def test_an_api_that_does_not_answer_is_one_line(folder, capsys):
    from runtime.cli import main
    from tests.fakes.servers import free_port

    assert main(["import", str(folder), "--library", "a", "--api", f"http://127.0.0.1:{free_port()}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no answer" in error and "Connection refused" in error, error


def test_direct_and_api_imports_give_the_same_library_and_messages(
    folder, tiny_settings, tiny_engine, tmp_path, capsys, monkeypatch
):
    from runtime.cli import api_imports, main

    # With several uploads at once, which of two identical files the server keeps is whichever request
    # it finishes first; one at a time, --api keeps the first in the listing, as the direct import does.
    monkeypatch.setattr(api_imports, "API_WORKERS", 1)

    (folder / "empty.png").write_bytes(b"")
    (folder / "summer" / "copy.png").write_bytes(image_bytes(0))  # an exact copy of winter/day/p0.png
    direct_results, api_results = tmp_path / "direct.jsonl", tmp_path / "api.jsonl"
    direct = [str(folder), "--library", "same", "--create", "--threshold", DISTINCT, "--results", str(direct_results)]
    assert main(["import", *direct, "--data-dir", str(tmp_path / "direct"), *model_flags(tiny_settings)]) == 1
    direct_line = capsys.readouterr().out
    with LiveServer.start(tiny_settings.replace(data_dir=str(tmp_path / "served")), tiny_engine) as live:
        assert (
            main(
                [
                    "import",
                    str(folder),
                    "--library",
                    "same",
                    "--create",
                    "--threshold",
                    DISTINCT,
                    "--api",
                    live.url,
                    "--results",
                    str(api_results),
                ]
            )
            == 1
        )
        api_line = capsys.readouterr().out
        served = {image["id"] for image in live.client.get("/libraries/same/images").json()["images"]}
    assert api_line.replace(str(api_results), "RESULTS") == direct_line.replace(str(direct_results), "RESULTS")
    assert "duplicates 1 (exact 1)" in api_line
    direct_failures = [json.loads(line) for line in direct_results.read_text().splitlines()]
    api_failures = [json.loads(line) for line in api_results.read_text().splitlines()]
    assert sorted(direct_failures, key=str) == sorted(api_failures, key=str)
    assert {failure["item"] for failure in api_failures} == {"broken.png", "empty.png"}
    from runtime.libraries.local import LocalStore

    store = LocalStore(tiny_settings.replace(data_dir=str(tmp_path / "direct")), tiny_engine.dimension)
    try:
        assert {image.id for image in store.list_images("same").images} == served
    finally:
        store.close()


def test_an_interrupted_import_is_resumed_by_its_id(folder, tiny_settings, tiny_engine, tmp_path):
    """Ctrl-C leaves the job ``interrupted`` (a server does not pick it up); ``--resume`` finishes it."""
    from dataclasses import replace

    from runtime.cli import main
    from runtime.libraries.imports.jobs import FileJobs, ImportJob

    data = tmp_path / "data"
    jobs = FileJobs(data)
    job = jobs.save(
        replace(
            ImportJob("1" * 32, "album", {"folder": str(folder)}, threshold=float(DISTINCT), batch_size=2),
            status="interrupted",
        )
    )
    from runtime.libraries.local import LocalStore

    store = LocalStore(tiny_settings.replace(data_dir=str(data)), tiny_engine.dimension)
    store.create_library("album", tiny_engine.model_version)
    store.close()
    flags = ["--data-dir", str(data), *model_flags(tiny_settings)]
    assert main(["import", "--resume", job.import_id, *flags]) == 1  # broken.png fails
    assert jobs.find(job.import_id).status == "succeeded"
    assert jobs.find(job.import_id).counts["added"] == 6
    assert main(["import", "--resume", job.import_id, *flags]) == 2  # already succeeded


def test_a_manifest_names_local_files_only_under_allow_files_in_both_modes(
    tiny_settings, tiny_engine, tmp_path, capsys
):
    """Through --api the CLI once read every bare path of a manifest and uploaded it (``/etc/hostname``
    reached the server). Now a local file is read only under --allow-files DIR, resolved: a path, a
    ``..`` or a symlink leading out of DIR is refused, in the same words directly and through the API."""
    from runtime.cli import main

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "inside.png").write_bytes(image_bytes(1))
    (outside / "secret.png").write_bytes(image_bytes(2))
    (allowed / "link.png").symlink_to(outside / "secret.png")
    manifest = tmp_path / "files.jsonl"
    lines = [
        {"url": "inside.png", "id": "inside"},
        {"url": str(outside / "secret.png"), "id": "absolute"},
        {"url": "../outside/secret.png", "id": "dotdot"},
        {"url": "link.png", "id": "link"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    def imported(mode: list[str], *flags: str) -> tuple[set[str], list[dict]]:
        results = tmp_path / f"failures-{len(list(tmp_path.iterdir()))}.jsonl"
        args = ["import", str(manifest), "--library", "files", "--create", "--results", str(results), *flags]
        assert main([*args, *mode]) == 1
        capsys.readouterr()
        failures = [json.loads(line) for line in results.read_text().splitlines()]
        return {failure["item"] for failure in failures}, failures

    with LiveServer.start(tiny_settings.replace(data_dir=str(tmp_path / "served")), tiny_engine) as live:
        api = ["--api", live.url]
        refused, failures = imported(api)  # no --allow-files: no local file at all
        assert refused == {"inside", "absolute", "dotdot", "link"}
        assert {failure["code"] for failure in failures} == {"url_refused"}
        assert live.client.get("/libraries/files").json()["image_count"] == 0
        refused, api_failures = imported(api, "--allow-files", str(allowed))
        assert refused == {"absolute", "dotdot", "link"}
        assert [image["id"] for image in live.client.get("/libraries/files/images").json()["images"]] == ["inside"]
    direct = ["--data-dir", str(tmp_path / "direct"), *model_flags(tiny_settings)]
    refused, direct_failures = imported(direct, "--allow-files", str(allowed))
    assert sorted(direct_failures, key=str) == sorted(api_failures, key=str)
    assert "outside the --allow-files folder" in api_failures[0]["message"]


def test_allow_files_is_refused_where_it_means_nothing(folder, tmp_path, capsys):
    from runtime.cli import main

    assert main(["import", str(folder), "--library", "a", "--allow-files", str(tmp_path)]) == 2
    assert "--allow-files: goes with a local manifest file" in capsys.readouterr().err


@pytest.fixture
def hostile_folder(tmp_path) -> Path:
    """One picture, a FIFO named ``*.png`` (opening it for reading blocks until a writer comes), and a
    symlink to a picture outside the folder."""
    root, outside = tmp_path / "hostile", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "real.png").write_bytes(image_bytes(4))
    os.mkfifo(root / "pipe.png")
    (outside / "private.png").write_bytes(image_bytes(5))
    (root / "away.png").symlink_to(outside / "private.png")
    return root


def test_a_folder_lists_its_fifos_and_outward_links_as_ignored(hostile_folder):
    from runtime.libraries.imports.sources import folder_items

    listed = {item.id: item.ignored for item in folder_items(hostile_folder)}
    assert listed == {"away.png": "link_outside_folder", "pipe.png": "not_a_regular_file", "real.png": None}


def test_a_folder_with_a_fifo_and_an_outward_link_imports_the_rest(hostile_folder, tiny_settings, tmp_path):
    args = [str(hostile_folder), "--library", "hostile", "--create", "--data-dir", str(tmp_path / "data")]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runtime", "import", *args, *model_flags(tiny_settings)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,  # the old import opened the FIFO and never came back
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the import hung on the FIFO")
    assert done.returncode == 0, done.stderr
    assert "added 1" in done.stdout
    assert "ignored 2 (not a regular file 1, link outside folder 1)" in done.stdout
