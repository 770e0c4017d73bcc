"""The embedded store's index (runtime/libraries/local_index.py): a filtered search checks a bounded
number of images, and reads run on snapshots, so a slow search holds up neither searches nor writes.

The slow search is held open deterministically: its filter, evaluated by the real evaluator, waits on
an event at its first image (``HeldFilter``). Every claim is an ordering fact ("finished while the slow
one was still running"); the join timeouts only stop a failing test from hanging."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from runtime.libraries import local_index
from runtime.libraries.filters import MAX_FILTER_CHECKS, MAX_FILTERED_CANDIDATES
from runtime.libraries.local import LocalStore
from runtime.libraries.store import NewImage
from runtime.settings import Settings
from tests.runtime.libraries.test_stores import DIM, VERSION, unit

GIVE_UP_S = 30  # a failing test's threads are abandoned after this; a passing one never waits for it


@pytest.fixture
def store(tmp_path):
    store = LocalStore(Settings(data_dir=str(tmp_path / "data")), DIM)
    yield store
    store.close()


class HeldFilter:
    """Wraps the index's filter compiler: each image the filter checks is counted, and (when ``hold``)
    the first one waits until ``release`` is set, holding that search open mid-evaluation."""

    def __init__(self, monkeypatch, hold: bool = True):
        self.checked = 0
        self.started, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        compile_filter = local_index.compile_filter

        def compile_held(conditions):
            passes = compile_filter(conditions)

            def held(metadata):
                self.checked += 1
                self.started.set()
                self.release.wait()
                return passes(metadata)

            return held

        monkeypatch.setattr(local_index, "compile_filter", compile_held)


class Running:
    """A call on its own thread, its answer (or error) kept."""

    def __init__(self, call: Callable[[], object]):
        self.answer: object = None
        self.error: BaseException | None = None

        def run():
            try:
                self.answer = call()
            except BaseException as error:  # re-raised by the test through ``result``
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finished(self) -> bool:
        self.thread.join(GIVE_UP_S)
        return not self.thread.is_alive()

    def result(self) -> object:
        assert self.finished()
        if self.error is not None:
            raise self.error
        return self.answer


def search(store, **kwargs):
    return store.search("lib", unit(1), model_version=VERSION, **kwargs)


def fill(store) -> None:
    store.create_library("lib", VERSION)
    colors = ["red", "blue", "red", "blue"]
    images = [NewImage(unit(10 + i), f"i{i}", {"color": color}) for i, color in enumerate(colors)]
    store.add_images("lib", images, model_version=VERSION, dedup=None)


def test_a_plain_search_finishes_while_a_slow_filtered_search_of_the_library_runs(store, monkeypatch):
    fill(store)
    held = HeldFilter(monkeypatch)
    slow = Running(lambda: search(store, filter={"color": "red"}))
    try:
        assert held.started.wait(GIVE_UP_S)
        plain = Running(lambda: search(store))
        assert plain.finished(), "the plain search waited for the slow one"
        assert slow.thread.is_alive()  # the plain search finished while the slow one was still running
        assert sorted(match.id for match in plain.result().matches) == ["i0", "i1", "i2", "i3"]
    finally:
        held.release.set()
    assert sorted(match.id for match in slow.result().matches) == ["i0", "i2"]


def test_writes_finish_during_a_slow_read_which_answers_from_the_library_as_it_began(store, monkeypatch):
    fill(store)
    held = HeldFilter(monkeypatch)
    slow = Running(lambda: search(store, filter={"color": "red"}))
    try:
        assert held.started.wait(GIVE_UP_S)
        writes = [
            Running(lambda: store.delete_image("lib", "i0")),
            Running(lambda: store.update_metadata("lib", "i1", {"color": "red"})),
            Running(
                lambda: store.add_image(
                    "lib", unit(20), model_version=VERSION, image_id="new", metadata={"color": "red"}
                )
            ),
        ]
        for write in writes:
            assert write.finished(), "a write waited for the slow read"
            write.result()
        assert slow.thread.is_alive()  # the writes finished while it was still running
    finally:
        held.release.set()
    assert sorted(match.id for match in slow.result().matches) == ["i0", "i2"]  # its snapshot: before the writes
    assert sorted(match.id for match in search(store, filter={"color": "red"}).matches) == ["i1", "i2", "new"]


def test_a_filtered_search_checks_at_most_the_candidate_bound_then_answers_partial(store, monkeypatch):
    """The one image that passes ranks last of MAX_FILTERED_CANDIDATES + 1: it is past the bound."""
    store.create_library("lib", VERSION)
    query = unit(1)
    others = np.random.default_rng(5).normal(size=(MAX_FILTERED_CANDIDATES, DIM)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    images = [NewImage(vector, f"c{i}", {"kind": "common"}) for i, vector in enumerate(others)]
    images.append(NewImage(-query, "rare", {"kind": "rare"}))  # the lowest score there is
    store.add_images("lib", images, model_version=VERSION, dedup=None)
    held = HeldFilter(monkeypatch, hold=False)

    found = search(store, filter={"kind": "rare"}, top_k=3)
    assert (found.matches, found.partial) == ([], True)
    assert held.checked == MAX_FILTERED_CANDIDATES  # not the whole library

    held.checked = 0
    hundred = {"$or": [{"kind": "rare"}] * 100}  # 100 constraints: fewer images, the same constraint checks
    found = search(store, filter=hundred, top_k=3)
    assert (found.matches, found.partial, held.checked) == ([], True, MAX_FILTER_CHECKS // 100)

    some = search(store, filter={"kind": {"$in": ["common", "rare"]}}, top_k=3)
    assert (len(some.matches), some.partial) == (3, False)  # top_k passed within the bound: complete

    store.delete_image("lib", "c0")  # now every image is within the bound
    found = search(store, filter={"kind": "rare"}, top_k=3)
    assert ([match.id for match in found.matches], found.partial) == (["rare"], False)
