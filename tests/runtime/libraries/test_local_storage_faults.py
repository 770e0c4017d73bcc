"""The embedded store's storage faults, on its real SQLite file: a full disk (SQLite's own SQLITE_FULL,
by ``PRAGMA max_page_count`` on the store's connection), a damaged, emptied or foreign file, a read-only
one. Through the HTTP server and the CLI: tests/hardening/test_storage_faults.py."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import ApiError
from runtime.libraries.local import LocalStore
from runtime.libraries.local_sqlite import DB_FILE, SCHEMA_VERSION
from runtime.settings import Settings

DIM = 16
VERSION = "test-model/v1"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def add(store: LocalStore, image_id: str, seed: int) -> None:
    store.add_image("lib", unit(seed), model_version=VERSION, image_id=image_id, metadata={"pad": {"text": "x" * 3000}})


def limit_pages(store: LocalStore, pages: int) -> None:
    """The database may grow to ``pages`` pages: past it SQLite answers SQLITE_FULL, as on a full disk."""
    connection = store._database()._db
    connection.execute(f"PRAGMA max_page_count = {pages}")


def a_store_with_images(folder: Path, count: int) -> LocalStore:
    store = LocalStore(Settings(data_dir=str(folder)), DIM)
    store.create_library("lib", VERSION)
    for number in range(count):
        add(store, f"img-{number}", number)
    return store


def test_a_full_disk_is_507_and_keeps_every_acknowledged_image(tmp_path):
    store = a_store_with_images(tmp_path, 3)
    pages = store._database()._db.execute("PRAGMA page_count").fetchone()[0]
    limit_pages(store, pages + 2)
    acknowledged, refused = ["img-0", "img-1", "img-2"], []
    for number in range(3, 40):
        try:
            add(store, f"img-{number}", number)
            acknowledged.append(f"img-{number}")
        except ApiError as error:
            refused.append(error)
    assert refused, "the limit was never reached"
    assert {(error.status_code, error.code) for error in refused} == {(507, "storage_full")}
    assert str(tmp_path / DB_FILE) in refused[0].message
    assert [image.id for image in store.list_images("lib", limit=100).images] == sorted(acknowledged)
    assert store.get_library("lib").image_count == len(acknowledged)  # the index holds only what was written

    limit_pages(store, 1_000_000)  # space freed: the same store takes writes again
    add(store, "after", 999)
    store.close()
    reopened = LocalStore(Settings(data_dir=str(tmp_path)), DIM)
    assert [image.id for image in reopened.list_images("lib", limit=100).images] == sorted([*acknowledged, "after"])
    reopened.close()


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 3)


def garbage_header(path: Path) -> None:
    with open(path, "r+b") as file:
        file.write(b"not a database!!")


def foreign(path: Path) -> None:
    path.unlink()
    sqlite3.connect(path).execute("CREATE TABLE notes (text TEXT)").connection.close()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (emptied, "0 bytes"),
        (truncated, "malformed"),
        (garbage_header, "not a SQLite database"),
        (foreign, "not a library database"),
    ],
)
def test_a_damaged_database_is_refused_on_every_call_and_never_written_over(tmp_path, damage, reason):
    a_store_with_images(tmp_path, 40).close()
    path = tmp_path / DB_FILE
    for extra in ("-wal", "-shm"):
        path.with_name(DB_FILE + extra).unlink(missing_ok=True)
    damage(path)
    before = path.read_bytes()
    store = LocalStore(Settings(data_dir=str(tmp_path)), DIM)
    for call in (store.open, store.list_libraries, lambda: store.create_library("new", VERSION)):
        with pytest.raises(ApiError) as refused:
            call()
        assert (refused.value.status_code, refused.value.code) == (503, "store_damaged")
        assert str(path) in refused.value.message and reason in refused.value.message
    assert path.read_bytes() == before
    store.close()


def test_a_deleted_database_beside_its_log_is_refused(tmp_path):
    store = a_store_with_images(tmp_path, 2)
    shutil.copy(tmp_path / (DB_FILE + "-wal"), tmp_path / "kept-wal")
    store.close()
    (tmp_path / DB_FILE).unlink()
    shutil.copy(tmp_path / "kept-wal", tmp_path / (DB_FILE + "-wal"))
    with pytest.raises(ApiError) as refused:
        LocalStore(Settings(data_dir=str(tmp_path)), DIM).open()
    assert refused.value.code == "store_damaged" and "write-ahead log" in refused.value.message


def test_a_newer_schema_is_refused_and_an_older_file_is_upgraded(tmp_path):
    a_store_with_images(tmp_path, 1).close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ApiError) as refused:
        LocalStore(Settings(data_dir=str(tmp_path)), DIM).open()
    assert refused.value.code == "store_damaged" and "schema version" in refused.value.message

    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("PRAGMA user_version = 0")  # as the releases before the version was kept wrote it
    db.close()
    store = LocalStore(Settings(data_dir=str(tmp_path)), DIM)
    assert store.get_library("lib").image_count == 1
    store.close()
    assert sqlite3.connect(tmp_path / DB_FILE).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_explorer_s_examples_are_the_store_s_real_messages(tmp_path, monkeypatch):
    from runtime.api.library_schemas import ERROR_TEXTS

    monkeypatch.chdir(tmp_path)
    store = a_store_with_images(Path("./data"), 1)  # ./data: the default data directory the examples show
    limit_pages(store, store._database()._db.execute("PRAGMA page_count").fetchone()[0])
    with pytest.raises(ApiError) as full:
        for number in range(1, 40):
            add(store, f"img-{number}", number)
    store.close()
    emptied(Path("data") / DB_FILE)
    with pytest.raises(ApiError) as damaged:
        LocalStore(Settings(data_dir="./data"), DIM).open()
    for error in (full.value, damaged.value):
        assert (error.status_code, error.message) == ERROR_TEXTS[error.code][::2]


def test_a_schema_2_file_gets_the_tier_columns_in_place_and_its_images_have_no_perceptual_hash(tmp_path):
    a_store_with_images(tmp_path, 2).close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    for table, column in (("images", "perceptual_hash"), ("images", "width"), ("images", "height")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("ALTER TABLE libraries DROP COLUMN threshold")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = LocalStore(Settings(data_dir=str(tmp_path)), DIM)
    assert store.get_library("lib").image_count == 2 and store.get_library("lib").threshold is None
    store.close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    columns = {row[1] for row in db.execute("PRAGMA table_info(images)")}
    assert {"perceptual_hash", "width", "height"} <= columns
    assert db.execute("SELECT COUNT(*) FROM images WHERE perceptual_hash IS NULL").fetchone()[0] == 2
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
