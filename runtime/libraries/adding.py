"""Adding images to a library: the one path every entry point takes (the API's single and batch add,
the local import runner, the AWS import worker).

Each step spares the next its work:

1. each item's id and metadata are checked, and ids the library already holds are refused in one
   batched read (an import run again, or resumed, re-reads nothing it stored under a given id);
2. the files are read in parallel (the reader threads, one fetch deadline for a request);
3. an exact copy (SHA-256 of the bytes) of a library image, of an image an earlier batch of the same
   import took, or of an earlier item of the call is found before any decoding;
4. the rest decode under the process's decode memory budget and the per-call decode limit, and one
   forward pass embeds them;
5. one store write adds them; the store refuses copies (perceptual hash) and, with a threshold,
   similar images against the library and within the call, and the call's outcomes are counted in the metrics.

Every item gets its answer, in order: ``Added``, ``Duplicate`` or the ``ApiError`` a single add of it
raises. What no item can avoid (the library is gone or full, another model's library) raises.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from runtime.embedder import Embedder, Input
from runtime.engines.priority import Priority
from runtime.errors import ApiError
from runtime.inputs.images import LibraryPixels
from runtime.libraries.hashing import content_hash
from runtime.libraries.metadata import check_metadata
from runtime.libraries.names import check_image_id
from runtime.libraries.store import (
    EXACT,
    EXACT_SCORE,
    AddResult,
    Dedup,
    Duplicate,
    LibraryStore,
    Match,
    NewImage,
    Refused,
    image_exists,
)
from runtime.libraries.thumbnails import make_thumbnail
from runtime.libraries.values import check_score
from runtime.observability import record_library_adds

CONTENT_ID_CHARS = 32
"""An item named by its content gets the first 32 hex digits of its SHA-256 as its id."""

Outcome = AddResult | ApiError


@dataclass(frozen=True)
class AddItem:
    source: Input | ApiError
    """Where the image's bytes are, or why the item names none (answered as its error)."""
    id: str | None = None
    metadata: dict[str, Any] | None = None
    label: str = ""
    """How messages name the item: ``images[3]`` in a batch, nothing for a single add or an import."""
    named_by_content: bool = False
    """Without an id: True names the image by its content hash (an import: adding it again is a no-op),
    False lets the store give it a new id (the API)."""


def dedup_of(dedup: bool, threshold: float | None) -> Dedup | None:
    """What an add refuses (``store.Dedup``): None when dedup is off; the caller's ``threshold`` (None: the
    library's or the setting's) for the similar tier."""
    check_score(threshold, "threshold")
    return Dedup(threshold) if dedup else None


class ExactSeen:
    """Files taken by earlier calls of one import (its batches run in parallel, so the store may not
    hold them yet): content hash -> the match a later copy is answered with.

    Only the latest ``keep`` claims are kept, so an import of a million images holds no million
    hashes: a claim that old is from a batch long committed, whose copies the store finds itself."""

    def __init__(self, keep: int = 4096) -> None:
        self._first: OrderedDict[str, Match] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def claim(self, digest: str, image_id: str, metadata: dict[str, Any]) -> Match | None:
        """None if this is the first image with this content, else the first one's match."""
        with self._lock:
            first = self._first.setdefault(digest, Match(image_id, EXACT_SCORE, metadata))
            if len(self._first) > self._keep:
                self._first.popitem(last=False)
        return None if first.id == image_id else first


@dataclass
class Pending:
    """An item on its way: its position in the call, checked id and metadata, then its bytes."""

    position: int
    item: AddItem
    id: str | None
    metadata: dict[str, Any]
    data: bytes = b""
    digest: str = ""


def add_items(
    store: LibraryStore[Any],
    embedder: Embedder,
    library: str,
    items: list[AddItem],
    *,
    dedup: Dedup | None,
    priority: Priority,
    deadline: float | None = None,
    seen: ExactSeen | None = None,
    library_created: float | None = None,
) -> list[Outcome]:
    """Each item's outcome, in order (see the module's docstring for the steps); ``priority`` is the
    forward pass's place in the engine's queue (``runtime.engines.Priority``); ``library_created``:
    see ``LibraryStore.add_batch``."""
    outcomes: list[Outcome | None] = [None] * len(items)
    pending = checked_items(store, library, items, outcomes)
    pending = read_files(embedder, pending, outcomes, deadline)
    name_by_content(store, library, pending, outcomes)
    pending = [one for one in pending if outcomes[one.position] is None]
    if dedup is not None:
        pending = answer_exact_copies(store, library, pending, outcomes, seen)
    for one, result in embed_and_add(store, embedder, library, pending, outcomes, dedup, priority, library_created):
        outcomes[one.position] = result.error if isinstance(result, Refused) else result
    return record_library_adds([outcome for outcome in outcomes if outcome is not None])


def checked_items(
    store: LibraryStore[Any], library: str, items: list[AddItem], outcomes: list[Outcome | None]
) -> list[Pending]:
    """Items whose id and metadata pass the rules and whose given id the library does not hold yet."""
    pending: list[Pending] = []
    for position, item in enumerate(items):
        try:
            if isinstance(item.source, ApiError):
                raise item.source
            image_id = check_image_id(item.id, item.label) if item.id is not None else None
            metadata = check_metadata(item.metadata or {}, store.settings.max_metadata_bytes, item.label)
        except ApiError as error:
            outcomes[position] = error
            continue
        pending.append(Pending(position, item, image_id, metadata))
    refuse_taken_ids(store, library, [one for one in pending if one.id is not None], outcomes)
    return [one for one in pending if outcomes[one.position] is None]


def refuse_taken_ids(
    store: LibraryStore[Any], library: str, named: list[Pending], outcomes: list[Outcome | None]
) -> None:
    taken = store.existing_ids(library, sorted({one.id for one in named if one.id is not None}))
    for one in named:
        if one.id in taken:
            outcomes[one.position] = image_exists(library, one.id, one.item.label)


def read_files(
    embedder: Embedder, pending: list[Pending], outcomes: list[Outcome | None], deadline: float | None
) -> list[Pending]:
    def read(one: Pending) -> bytes:
        return embedder.read_bytes(source_of(one), deadline)

    read_ones = []
    for one, data in zip(pending, embedder.read_each(pending, read), strict=True):
        if isinstance(data, ApiError):
            outcomes[one.position] = data
        else:
            one.data, one.digest = data, content_hash(data)
            read_ones.append(one)
    return read_ones


def name_by_content(
    store: LibraryStore[Any], library: str, pending: list[Pending], outcomes: list[Outcome | None]
) -> None:
    """Items named by their content get their id now, and one more batched read refuses those taken."""
    unnamed = [one for one in pending if one.id is None and one.item.named_by_content]
    for one in unnamed:
        one.id = one.digest[:CONTENT_ID_CHARS]
    if unnamed:
        refuse_taken_ids(store, library, unnamed, outcomes)


def answer_exact_copies(
    store: LibraryStore[Any],
    library: str,
    pending: list[Pending],
    outcomes: list[Outcome | None],
    seen: ExactSeen | None,
) -> list[Pending]:
    """Copies of a library image, or of an image an earlier call of the import took, are answered
    without decoding; the others go on."""
    known = store.find_exact(library, sorted({one.digest for one in pending}))
    going_on = []
    for one in pending:
        earlier = known.get(one.digest)
        if earlier is None and seen is not None and one.id is not None:
            earlier = seen.claim(one.digest, one.id, one.metadata)
        if earlier is not None and earlier.id == one.id:  # stored since its id was checked (another import)
            outcomes[one.position] = image_exists(library, one.id, one.item.label)
        elif earlier is not None:
            outcomes[one.position] = Duplicate(earlier, EXACT)
        else:
            going_on.append(one)
    return going_on


def embed_and_add(
    store: LibraryStore[Any],
    embedder: Embedder,
    library: str,
    pending: list[Pending],
    outcomes: list[Outcome | None],
    dedup: Dedup | None,
    priority: Priority,
    library_created: float | None = None,
) -> list[tuple[Pending, AddResult | Refused]]:
    """Decodes each distinct file once, embeds them in one forward pass, and adds every pending item
    in one store call (a copy of an earlier item of the call gets its vector: the store finds it exact)."""
    if not pending:
        return []
    firsts = list({one.digest: one for one in reversed(pending)}.values())[::-1]
    pictures = embedder.decode_each([(source_of(one), one.data) for one in firsts])
    decoded: dict[str, LibraryPixels] = {}
    errors: dict[str, ApiError] = {}
    for one, picture in zip(firsts, pictures, strict=True):
        if isinstance(picture, ApiError):
            errors[one.digest] = picture
        else:
            decoded[one.digest] = picture
    for one in pending:
        if one.digest in errors:
            outcomes[one.position] = errors[one.digest]
    ready = [one for one in pending if one.digest in decoded]
    if not ready:
        return []
    digests = list(decoded)
    vectors = dict(
        zip(digests, embedder.encode_pixels([decoded[digest].pixels for digest in digests], priority), strict=True)
    )
    # Encoded only for a library that keeps them: a WebP costs 3 to 50 ms an image.
    keeps = store.get_library(library).thumbnails
    thumbnails = {digest: make_thumbnail(picture.pixels) if keeps else None for digest, picture in decoded.items()}
    images = [
        NewImage(
            vectors[one.digest],
            one.id,
            one.metadata,
            one.digest,
            thumbnails[one.digest],
            decoded[one.digest].perceptual_hash,
            decoded[one.digest].size,
        )
        for one in ready
    ]
    labels = [one.item.label for one in ready]
    added = store.add_batch(
        library,
        images,
        model_version=embedder.model_version,
        dedup=dedup,
        labels=labels,
        library_created=library_created,
    )
    return list(zip(ready, added, strict=True))


def source_of(one: Pending) -> Input:
    assert isinstance(one.item.source, Input)  # an item without a source was answered when checked
    return one.item.source
