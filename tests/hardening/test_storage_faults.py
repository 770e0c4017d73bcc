"""Storage faults of the embedded store, against ``python -m runtime serve`` in its own process:

- a full disk: a real one, a small tmpfs filled to its last byte (mounting it needs root; elsewhere the
  test is skipped, and tests/runtime/libraries/test_local_storage_faults.py still drives SQLite's own
  SQLITE_FULL through the store with ``PRAGMA max_page_count``);
- a database emptied, truncated or overwritten, a read-only data directory or database file: ``serve``
  refuses to start, in one line naming the file, with exit code 2.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bench.common import ServerProcess, server_args
from runtime.libraries.local import LocalStore
from runtime.libraries.local_sqlite import DB_FILE
from runtime.settings import Settings
from tests.fakes.images import b64, image_bytes
from tests.runtime.test_cli import refused

pytestmark = pytest.mark.slow
DISK_BYTES = 4 * 1024 * 1024


@contextmanager
def small_disk(folder: Path, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``DISK_BYTES`` mounted on ``folder``, unmounted after; skips where none can be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir()
    options = f"size={DISK_BYTES}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left; deleting it frees the space."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError:
                continue
    return ballast


class Connection:
    """One keep-alive HTTP connection: ``sock`` stays the same object for as long as the server keeps it."""

    def __init__(self, port: int):
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.http.connect()
        self.sock = self.http.sock

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, str | None]:
        data = json.dumps(body).encode() if body is not None else None
        self.http.request(method, path, body=data, headers={"Content-Type": "application/json"})
        answer = self.http.getresponse()
        return answer.status, json.loads(answer.read()), answer.getheader("connection")

    def add(self, image_id: str, seed: int) -> tuple[int, dict, str | None]:
        return self.call(
            "POST",
            "/libraries/full/images",
            {"img": b64(image_bytes(seed, size=(48, 48))), "id": image_id, "dedup": False, "metadata": {"n": seed}},
        )


def assert_storage_full(status: int, body: dict, connection_header: str | None, *, library_write: bool = True) -> None:
    assert status == 507, body
    assert body["code"] == "storage_full" and body.get("status") == (-1 if library_write else None), body
    assert "disk is full" in body["message"] and "Free space" in body["message"], body
    assert connection_header != "close"


def test_a_full_disk_is_507_on_every_write_keeps_everything_and_recovers(tiny_settings, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        settings = tiny_settings.replace(data_dir=str(disk / "data"))
        with ServerProcess(*server_args(settings)) as server:
            client = Connection(server.port)
            assert client.call("POST", "/libraries", {"name": "full"})[0] == 201
            acknowledged = []
            for seed in range(3):
                assert client.add(f"img-{seed}", seed)[0] == 200
                acknowledged.append(f"img-{seed}")
            ballast = fill(disk)

            refusals = []
            for seed in range(3, 300):
                status, body, header = client.add(f"img-{seed}", seed)
                if status == 200:
                    acknowledged.append(f"img-{seed}")  # space SQLite had already taken
                    continue
                assert_storage_full(status, body, header)
                refusals.append(seed)
                if len(refusals) == 3:
                    break
            assert len(refusals) == 3, "the disk never filled"
            writes = [
                ("POST", "/libraries", {"name": "another"}),
                ("PATCH", "/libraries/full/images/img-0", {"metadata": {"n": "new"}}),
                ("DELETE", "/libraries/full/images/img-1", None),
            ]
            for method, path, body in writes:
                status, answer, header = client.call(method, path, body)
                if status >= 300:  # a write that fits in pages SQLite holds already succeeds
                    assert_storage_full(status, answer, header)
                elif path.endswith("img-1"):
                    acknowledged.remove("img-1")
            manifest = {"manifest": "http://127.0.0.1:9/manifest.jsonl"}
            assert_storage_full(*client.call("POST", "/libraries/full/imports", manifest), library_write=False)
            assert client.sock is client.http.sock  # the same connection throughout

            ballast.unlink()  # space freed: writes work again, no restart
            assert client.add("after", 999)[0] == 200
            acknowledged.append("after")
            assert client.call("POST", "/libraries/full/imports", manifest)[0] == 202
            assert client.sock is client.http.sock

        with ServerProcess(*server_args(settings)) as restarted:  # what was acknowledged is on disk
            status, page, _ = Connection(restarted.port).call("GET", "/libraries/full/images?limit=1000")
        assert status == 200
        assert [image["id"] for image in page["images"]] == sorted(acknowledged)


def a_database(folder: Path) -> Path:
    """A data directory with a library of 300 images, closed cleanly: ``libraries.sqlite3`` alone."""
    store = LocalStore(Settings(data_dir=str(folder)), 16)
    store.create_library("kept", "test/v1")
    rng = np.random.default_rng(0)
    for number in range(300):
        vector = rng.normal(size=16).astype(np.float32)
        store.add_image("kept", vector / np.linalg.norm(vector), model_version="test/v1", image_id=f"img-{number}")
    store.close()
    return folder / DB_FILE


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path: path.write_bytes(b""), "0 bytes: the file was emptied"),
        (lambda path: os.truncate(path, path.stat().st_size // 2), "damaged (database disk image is malformed)"),
        (lambda path: path.write_bytes(b"garbage header!!" + path.read_bytes()[16:]), "not a SQLite database"),
    ],
    ids=["emptied", "truncated", "garbage-header"],
)
def test_serve_refuses_a_damaged_database_in_one_line(tiny_settings, tmp_path, damage, reason):
    path = a_database(tmp_path / "data")
    damage(path)
    before = path.read_bytes()
    error = refused(*server_args(tiny_settings.replace(data_dir=str(tmp_path / "data"))))
    assert error.startswith(f"error: {path}: {reason}") and "restore" in error, error
    assert path.read_bytes() == before  # refused, not created over


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (a folder or a file) read-only: root writes through permissions, so for root the file
    system itself is made read-only there (a read-only bind mount)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], check=False)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a read-only bind mount here")
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_serve_refuses_a_read_only_data_directory_in_one_line(tiny_settings, tmp_path):
    folder = tmp_path / "data"
    a_database(folder)
    with read_only(folder):
        error = refused(*server_args(tiny_settings.replace(data_dir=str(folder))))
    assert error.startswith(f"error: --data-dir='{folder}': {folder} cannot be written"), error


def test_serve_refuses_a_read_only_database_in_one_line(tiny_settings, tmp_path):
    path = a_database(tmp_path / "data")
    with read_only(path):
        error = refused(*server_args(tiny_settings.replace(data_dir=str(tmp_path / "data"))))
    assert error == f"error: {path}: cannot be written (attempt to write a readonly database)", error
