"""The storage interface of image libraries, and the one algorithm every store runs.

A store keeps libraries of unit vectors with an id, a metadata object and (when known) the SHA-256
of the image file each. ``LibraryStore`` checks arguments with the rules (``names.py``, ``metadata.py``,
``filters.py``, ``hashing.py``, ``values.py``), then runs the algorithm of each operation itself, holding
the library the way the store says (``_writing``: the local store's lock, the AWS store's lease):
model-version check, existing ids, exact duplicates by content hash, near duplicates against the library
and within the call, quota, insert. The stores supply only primitives (the ``_``-methods at the end of
the class): find, insert, remove, query, page. Each store names the type of its handle on a held library
(``LibraryStore[LibraryIndex]``, ``LibraryStore[Held]``), so the primitives are typed in every store.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from runtime.errors import (
    IMAGE_EXISTS,
    IMAGE_QUOTA_EXCEEDED,
    LIBRARY_NOT_FOUND,
    MODEL_VERSION_MISMATCH,
    SCAN_TOO_LARGE,
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    QuotaExceeded,
)
from runtime.libraries.filter_eval import compile_filter
from runtime.libraries.filters import Filter, check_filter, filtered_candidates
from runtime.libraries.grouping import Grouping, GroupValue, check_grouping, group_of
from runtime.libraries.hashing import check_content_hash
from runtime.libraries.metadata import check_metadata
from runtime.libraries.names import check_image_id, check_library_name, new_image_id
from runtime.libraries.ordering import Order, check_order, page_after, sort_key, token_of
from runtime.libraries.perceptual import COPY_DISTANCE, hash_distance
from runtime.libraries.values import at, check_score, check_vector, writable_as_utf8
from runtime.observability import span
from runtime.settings import Settings
from runtime.vectors import scores_of

MAX_PAGE = 1000
"""Images per page of ``list_images`` (S3 Vectors' ListVectors answers at most 1,000 a call)."""
EXACT_SCORE = 1.0
GROUPED_HEAD = 1024
"""Candidates the first query of a grouped search asks for at least (``LibraryStore._grouped``)."""
"""The score an exact duplicate (the same file) is answered with."""
EXACT, COPY, SIMILAR = "exact", "copy", "similar"
"""The tiers of a duplicate: the same file (content hash), the same picture re-encoded, resized or lightly
edited (perceptual hash within ``perceptual.COPY_DISTANCE`` bits), an image that looks alike (score at or
above a threshold)."""
TIERS = (EXACT, COPY, SIMILAR)

HandleT = TypeVar("HandleT")
"""A store's handle on a held library: what ``_reading`` / ``_writing`` yield beside it."""


@dataclass(frozen=True)
class Library:
    name: str
    model_version: str
    create_time: float
    image_count: int
    thumbnails: bool = False
    """Whether it keeps a thumbnail of each image it adds (``runtime.libraries.thumbnails``)."""
    threshold: float | None = None
    """The ``similar`` threshold of an add that gives none (None: such an add refuses only exact and copy
    duplicates, or what the ``dedup_threshold`` setting says)."""


@dataclass(frozen=True)
class Image:
    id: str
    metadata: dict[str, Any]
    create_time: float


@dataclass(frozen=True)
class ImagePage:
    images: list[Image]
    next_token: str | None
    """Pass it back for the next page; None on the last page."""


@dataclass(frozen=True)
class StoredImage:
    """An image as the store keeps it, its vector included: what an export writes (``export.py``)."""

    id: str
    metadata: dict[str, Any]
    create_time: float
    vector: np.ndarray
    """float32, as stored."""
    content_hash: str | None = None
    thumbnail: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """What else the store keeps of the image (``perceptual_hash``, ...), by name, None values left out."""


@dataclass(frozen=True)
class StoredPage:
    images: list[StoredImage]
    next_token: str | None
    """Pass it back for the next page; None on the last page."""


@dataclass(frozen=True)
class Match:
    id: str
    score: float
    metadata: dict[str, Any]
    perceptual_hash: str | None = None
    """The stored image's perceptual hash, for the copy tier (not part of any answer)."""


@dataclass(frozen=True)
class Group:
    """The best matches of one value of a ``group_by`` key (``runtime.libraries.grouping``)."""

    value: GroupValue
    matches: list[Match]
    """Best first, at most ``per_group``."""


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]
    """Best first (grouped: the groups' matches, group after group)."""
    partial: bool = False
    """True: the search saw only its bound of candidates and the answer may miss some below them. The
    local store checked the filter on its bound (the best-scoring images, ``filters.filtered_candidates``)
    and fewer than ``top_k`` passed; or a grouped search's candidates (that bound locally, one query's
    100 on S3 Vectors) held fewer than ``top_k`` groups of ``per_group`` (``LibraryStore._grouped``); or
    examples left out of the matches took places S3 Vectors' 100 a query could not give back. The
    matches given are still the best that pass."""
    groups: list[Group] | None = None
    """With ``group_by``: best group first, at most ``top_k``."""


@dataclass(frozen=True)
class NewImage:
    vector: np.ndarray
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None
    """SHA-256 hex of the image file (``hashing.content_hash``): exact duplicates are found by it."""
    thumbnail: bytes | None = None
    """A small WebP of the image, kept when the library keeps thumbnails."""
    perceptual_hash: str | None = None
    """``perceptual.perceptual_hash`` of the decoded picture: copies (re-encoded, resized) are found by it."""
    size: tuple[int, int] | None = None
    """Width and height of the original picture in pixels (the duplicates scan keeps the largest)."""


@dataclass(frozen=True)
class Added:
    id: str
    score: float | None
    """Score of the closest image the library held before (None: dedup off, or it was empty)."""


@dataclass(frozen=True)
class Dedup:
    """What an add refuses (an add with dedup off passes None): exact and copy duplicates always, similar
    images scoring at or above ``threshold``; None: the library's threshold, else the ``dedup_threshold``
    setting, else no similar tier."""

    threshold: float | None = None


@dataclass(frozen=True)
class Duplicate:
    match: Match
    tier: str = SIMILAR
    """One of ``TIERS``: found in the library, or earlier in the same call."""

    @property
    def exact(self) -> bool:
        """The same file (content hash): the answers' ``exact``, kept beside ``tier``."""
        return self.tier == EXACT


@dataclass(frozen=True)
class Refused:
    """One item of ``add_batch`` that breaks a rule (bad id or metadata, id taken): nothing added for it."""

    error: ApiError


AddResult = Added | Duplicate


@dataclass(frozen=True)
class Stored:
    """One image as a full read of its library gives it (``_every_image``)."""

    image: Image
    filterable: dict[str, Any]
    """Its filterable metadata as the filter evaluator reads it (``filter_eval.readable``)."""
    content_hash: str | None = None
    perceptual_hash: str | None = None
    size: tuple[int, int] | None = None
    """Width and height of the original picture (None: added before sizes were kept)."""


@dataclass(frozen=True)
class Deleted:
    """What a delete by filter found and did."""

    count: int
    """Images that match the filter."""
    deleted: int
    """Images deleted: ``count``, or 0 for a dry run."""


class LibraryStore(ABC, Generic[HandleT]):
    """Libraries of vectors. The algorithms are here; subclasses implement the ``_`` primitives on
    their own handle type ``HandleT``."""

    thumbnails_by_default = False
    """Whether a library created without saying keeps thumbnails (the local store: yes)."""
    scan_limit_by_default: int | None = None
    """Images a full read (count, delete by filter, ``order_by``) takes at most when the setting
    ``max_scan_images`` is unset (None: no bound)."""
    query_limit: int | None = None
    """Most matches one ``_query`` answers (S3 Vectors: 100); None: as many as asked."""

    def __init__(self, settings: Settings, dimension: int):
        self.settings = settings
        self.dimension = dimension

    # --- libraries ---------------------------------------------------------------------
    def create_library(
        self, name: str, model_version: str, *, thumbnails: bool | None = None, threshold: float | None = None
    ) -> Library:
        """``threshold``: the library's default ``similar`` threshold for adds (``Library.threshold``)."""
        keeps = self.thumbnails_by_default if thumbnails is None else thumbnails
        check_score(threshold, "threshold")
        return self._create_library(check_library_name(name), model_version, keeps, threshold)

    def list_libraries(self) -> list[Library]:
        return sorted(self._list_libraries(), key=lambda library: (library.create_time, library.name))

    def get_library(self, name: str) -> Library:
        with self._reading(check_library_name(name)) as (library, _):
            return library

    def delete_library(self, name: str) -> None:
        self._delete_library(check_library_name(name))

    # --- adding ------------------------------------------------------------------------
    def add_images(
        self, name: str, images: list[NewImage], *, model_version: str, dedup: Dedup | None
    ) -> list[AddResult]:
        """Add in order, all or nothing on a broken rule (a 4xx names the item). With ``dedup``, an image
        that is a duplicate (``_screen``'s tiers) of one in the library or earlier in the call is not added:
        its match is answered instead."""
        results = self._add(name, images, model_version, dedup, strict=True)
        return [result for result in results if not isinstance(result, Refused)]

    def add_batch(
        self,
        name: str,
        images: list[NewImage],
        *,
        model_version: str,
        dedup: Dedup | None,
        labels: list[str] | None = None,
        library_created: float | None = None,
    ) -> list[AddResult | Refused]:
        """As ``add_images``, but an item that breaks a rule (id, metadata, id taken) is ``Refused``
        and the others go on. Errors of the whole call (library, model, quota) still raise.
        ``labels`` name the items in error messages (default ``images[<position>]``);
        ``library_created``: the library must be the one made then (an import's), not one made since
        under the same name (404 ``library_not_found``)."""
        return self._add(name, images, model_version, dedup, strict=False, labels=labels, created=library_created)

    def add_image(
        self,
        name: str,
        vector: np.ndarray,
        *,
        model_version: str,
        image_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        dedup: Dedup | None = None,
        content_hash: str | None = None,
        perceptual_hash: str | None = None,
    ) -> AddResult:
        metadata = metadata if metadata is not None else {}
        image = NewImage(vector, image_id, metadata, content_hash, perceptual_hash=perceptual_hash)
        return self.add_images(name, [image], model_version=model_version, dedup=dedup)[0]

    def find_exact(self, name: str, hashes: list[str]) -> dict[str, Match]:
        """The images whose file has one of these content hashes, by hash: asked before any model work."""
        with self._reading(check_library_name(name)) as (_, held):
            wanted = [value for value in hashes if check_content_hash(value)]
            return self._find_hashes(held, wanted) if wanted else {}

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        """Which of these (checked) ids the library holds, in one batched read: asked before any model work."""
        with self._reading(check_library_name(name)) as (_, held):
            return set(self._existing_ids(held, ids)) if ids else set()

    def _add(
        self,
        name: str,
        images: list[NewImage],
        model_version: str,
        dedup: Dedup | None,
        *,
        strict: bool,
        labels: list[str] | None = None,
        created: float | None = None,
    ) -> list[AddResult | Refused]:
        check_score(dedup.threshold if dedup else None, "threshold")
        name = check_library_name(name)
        results: list[AddResult | Refused | None] = [None] * len(images)
        if labels is None:
            labels = [f"images[{position}]" if len(images) > 1 else "" for position in range(len(images))]
        checked = self._checked(images, results, strict, labels)
        if not checked:
            return [result for result in results if result is not None]
        with span("store"), self._writing(name) as (library, held):
            if created is not None and library.create_time != created:
                raise library_not_found(name)
            check_model_version(library, model_version)
            taken = set(self._existing_ids(held, [image.id or "" for _, image in checked]))
            for position, image in checked:
                if image.id in taken:
                    if strict:
                        raise image_exists(name, image.id or "", labels[position])
                    results[position] = Refused(image_exists(name, image.id or "", labels[position]))
            checked = [(position, image) for position, image in checked if image.id not in taken]
            screened = self._screen(held, [image for _, image in checked], self._similar_at(library, dedup), dedup)
            pairs = zip(checked, screened, strict=True)
            accepted = [image for (_, image), result in pairs if isinstance(result, Added)]
            if accepted:
                check_image_quota(name, library.image_count, len(accepted), self.settings)
                self._insert(held, accepted)
        for (position, _), result in zip(checked, screened, strict=True):
            results[position] = result
        return [result for result in results if result is not None]

    def _checked(
        self, images: list[NewImage], results: list[AddResult | Refused | None], strict: bool, labels: list[str]
    ) -> list[tuple[int, NewImage]]:
        """Each image with its id (NFC, or generated), checked metadata and unit vector, by position."""
        checked: list[tuple[int, NewImage]] = []
        seen: set[str] = set()
        for position, (image, where) in enumerate(zip(images, labels, strict=True)):
            try:
                image_id = check_image_id(image.id, where) if image.id is not None else new_image_id()
                if image_id in seen:
                    raise Conflict(f"{at(where, 'id')}: {image_id!r} is given twice", code=IMAGE_EXISTS)
                metadata = check_metadata(image.metadata, self.settings.max_metadata_bytes, where)
            except ApiError as error:
                if strict:
                    raise
                results[position] = Refused(error)
                continue
            seen.add(image_id)
            vector = check_vector(image.vector, self.dimension)
            content_hash = check_content_hash(image.content_hash)
            checked.append(
                (position, replace(image, vector=vector, id=image_id, metadata=metadata, content_hash=content_hash))
            )
        return checked

    def _similar_at(self, library: Library, dedup: Dedup | None) -> float | None:
        """The ``similar`` threshold of an add: the call's, else the library's, else the setting's."""
        if dedup is None:
            return None
        for threshold in (dedup.threshold, library.threshold, self.settings.dedup_threshold):
            if threshold is not None:
                return threshold
        return None

    def _screen(
        self, held: HandleT, images: list[NewImage], threshold: float | None, dedup: Dedup | None
    ) -> list[AddResult]:
        """Each image's result, in order, against the library and the images accepted before it in the
        call: ``exact`` by content hash (no vector work), then ``copy`` among the ``copy_candidates`` nearest
        by embedding (their perceptual hashes), then ``similar`` (score at or above ``threshold``, if any)."""
        if dedup is None:
            return [Added(image.id or "", None) for image in images]
        hashes = [image.content_hash for image in images if image.content_hash]
        stored = self._find_hashes(held, hashes) if hashes else {}
        accepted: list[NewImage] = []
        accepted_files: dict[str, NewImage] = {}
        results: list[AddResult] = []
        for image in images:
            exact = exact_match(image, stored, accepted_files)
            if exact is not None:
                results.append(Duplicate(exact, EXACT))
                continue
            nearest = self._query(held, image.vector, self.settings.copy_candidates, None, {}, None).matches
            copy = copy_match(image, nearest + in_batch(image.vector, accepted))
            if copy is not None:
                results.append(Duplicate(copy, COPY))
                continue
            best = better(nearest[0] if nearest else None, best_in_batch(image.vector, accepted))
            if threshold is not None and best is not None and best.score >= threshold:
                results.append(Duplicate(best, SIMILAR))
                continue
            accepted.append(image)
            if image.content_hash:
                accepted_files[image.content_hash] = image
            results.append(Added(image.id or "", best.score if best else None))
        return results

    # --- images ------------------------------------------------------------------------
    def get_thumbnail(self, name: str, image_id: str) -> bytes:
        """The image's thumbnail (WebP); 404 when the image is not there or has none (its library keeps
        none, or it was added before the library kept them)."""
        name, image_id = check_library_name(name), check_image_id(image_id)
        with self._reading(name) as (_, held):
            thumbnail = self._thumbnail(held, image_id)
            if thumbnail is None and not self._existing_ids(held, [image_id]):  # a second read only then
                raise image_not_found(name, image_id)
        if thumbnail is None:
            raise NotFound(f"image {image_id!r} of library {name!r} has no thumbnail", code="thumbnail_not_found")
        return thumbnail

    def get_image(self, name: str, image_id: str) -> Image:
        name, image_id = check_library_name(name), check_image_id(image_id)
        with self._reading(name) as (_, held):
            image = self._image(held, image_id)
        if image is None:
            raise image_not_found(name, image_id)
        return image

    def list_images(
        self,
        name: str,
        *,
        limit: int = 100,
        next_token: str | None = None,
        order_by: str | None = None,
        order: str | None = None,
    ) -> ImagePage:
        """Images in a stable order, ``limit`` at a time; a token resumes after the last image it saw,
        across inserts and deletes (see each store's ``_page`` for how). With ``order_by``, in the order
        of that metadata key (``ordering.py``): a full read of the library for every page."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}", code="invalid_value")
        ordered = check_order(order_by, order)
        token = decode_token(next_token) if next_token else None
        with self._reading(check_library_name(name)) as (library, held):
            if ordered is None:
                return self._page(held, limit, token)
            self.check_scan(library, "order_by")
            return ordered_page(self._every_image(held), ordered, limit, token)

    # --- by filter -----------------------------------------------------------------------
    def count_images(self, name: str, filter: Filter | None = None) -> int:
        """How many images pass the filter (all of them without one): a full read of the library,
        evaluated by ``filter_eval`` on both stores."""
        conditions = check_filter(filter)
        with self._reading(check_library_name(name)) as (library, held):
            if not conditions:
                return library.image_count
            self.check_scan(library, "filter")
            return len(matching(self._every_image(held), conditions))

    def delete_images(self, name: str, filter: Filter, *, dry_run: bool = False) -> Deleted:
        """Delete every image that passes the filter (``{}``: every image), in one hold of the library:
        the images that match when it takes the library are deleted, and writes that come meanwhile
        wait for it (local) or for its lease (AWS), so none of them is deleted. A dry run only counts."""
        conditions = check_filter(filter)
        name = check_library_name(name)
        with (self._reading if dry_run else self._writing)(name) as (library, held):
            self.check_scan(library, "filter")
            found = matching(self._every_image(held), conditions)
            if found and not dry_run:
                self._remove_many(held, found)
        return Deleted(len(found), 0 if dry_run else len(found))

    def check_scan(self, library: Library, field_name: str) -> None:
        """A full read of a library larger than the bound is refused before it starts (409)."""
        limit = self.settings.max_scan_images or self.scan_limit_by_default
        if limit is not None and library.image_count > limit:
            raise Conflict(
                f"{field_name}: library {library.name!r} holds {library.image_count} images; this reads every "
                f"image, and this store reads at most {limit} (setting IMSIM_MAX_SCAN_IMAGES). Use search "
                "with a filter, or list the images a page at a time",
                code=SCAN_TOO_LARGE,
            )

    def every_image(self, name: str, field_name: str) -> list[Stored]:
        """Every image of the library with its hashes and size, for the duplicates scan (one snapshot
        locally; ListVectors pages on S3 Vectors), within the full-read bound (409 naming ``field_name``)."""
        with self._reading(check_library_name(name)) as (library, held):
            self.check_scan(library, field_name)
            return self._every_image(held)

    def stored_images(self, name: str, *, limit: int = MAX_PAGE, next_token: str | None = None) -> StoredPage:
        """As ``list_images``, with everything the store keeps of each image (vector, hashes,
        thumbnail): an export pages through a library with it, one page in memory at a time."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}", code="invalid_value")
        with self._reading(check_library_name(name)) as (_, held):
            return self._stored_page(held, limit, decode_token(next_token) if next_token else None)

    def library_dimension(self, name: str) -> int:
        """The dimension of the library's vectors (a store that holds one dimension: its own)."""
        self.get_library(name)
        return self.dimension

    def update_metadata(self, name: str, image_id: str, metadata: dict[str, Any]) -> Image:
        """Replace an image's metadata (the same rules as at add); its vector and create time stay."""
        name, image_id = check_library_name(name), check_image_id(image_id)
        metadata = check_metadata(metadata, self.settings.max_metadata_bytes)
        with self._writing(name) as (_, held):
            if not self._existing_ids(held, [image_id]):
                raise image_not_found(name, image_id)
            return self._replace_metadata(held, image_id, metadata)

    def delete_image(self, name: str, image_id: str) -> None:
        name, image_id = check_library_name(name), check_image_id(image_id)
        with self._writing(name) as (_, held):
            if not self._existing_ids(held, [image_id]):
                raise image_not_found(name, image_id)
            self._remove(held, image_id)

    # --- search ------------------------------------------------------------------------
    def search(
        self,
        name: str,
        vector: np.ndarray,
        *,
        model_version: str,
        top_k: int = 10,
        min_score: float | None = None,
        filter: Filter | None = None,
        exclude: Collection[str] = (),
        group_by: str | None = None,
        per_group: int | None = None,
    ) -> SearchResult:
        """The ``top_k`` best matches, best first, scored (1 + cosine) / 2, without the images ``exclude``
        names; with ``group_by``, the ``top_k`` best groups (``_grouped``)."""
        vector = check_vector(vector, self.dimension)
        top_k, conditions = self.check_top_k(top_k), check_filter(filter)
        check_score(min_score, "min_score")
        grouping = check_grouping(group_by, per_group)
        with self._reading(check_library_name(name)) as (library, held):
            check_model_version(library, model_version)
            with span("store"):
                return self._ranked(held, vector, top_k, min_score, conditions, frozenset(exclude), grouping)

    def search_like(
        self,
        name: str,
        image_id: str,
        *,
        model_version: str,
        top_k: int = 10,
        min_score: float | None = None,
        filter: Filter | None = None,
        group_by: str | None = None,
        per_group: int | None = None,
    ) -> SearchResult:
        """ "More like this": search by a stored image's vector; the image itself is left out."""
        name, image_id = check_library_name(name), check_image_id(image_id)
        top_k, conditions = self.check_top_k(top_k), check_filter(filter)
        check_score(min_score, "min_score")
        grouping = check_grouping(group_by, per_group)
        with self._reading(name) as (library, held):
            check_model_version(library, model_version)
            vector = self._vector(held, image_id)
            if vector is None:
                raise image_not_found(name, image_id)
            with span("store"):
                return self._ranked(held, vector, top_k, min_score, conditions, frozenset([image_id]), grouping)

    def stored_vectors(
        self, name: str, image_ids: list[str], labels: list[str], *, model_version: str
    ) -> list[np.ndarray]:
        """The vectors of these stored images, in order, in one batched read (the examples of a search,
        read before any model work); 404 ``image_not_found`` naming the first missing one by its label."""
        name = check_library_name(name)
        ids = [check_image_id(image_id, label) for image_id, label in zip(image_ids, labels, strict=True)]
        with self._reading(name) as (library, held):
            check_model_version(library, model_version)
            found = self._vectors(held, sorted(set(ids))) if ids else {}
        for image_id, label in zip(ids, labels, strict=True):
            if image_id not in found:
                raise image_not_found(name, image_id, label)
        return [found[image_id] for image_id in ids]

    def _ranked(
        self,
        held: HandleT,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: frozenset[str],
        grouping: Grouping | None,
    ) -> SearchResult:
        """A search over the query primitive: one left-out image is the primitive's own; more are asked
        for beyond ``top_k`` and dropped here."""
        if grouping is not None:
            return self._grouped(held, vector, top_k, min_score, conditions, exclude, grouping)
        if len(exclude) <= 1:
            return self._query(held, vector, top_k, min_score, conditions, next(iter(exclude), None))
        asked = top_k + len(exclude)
        found = self._query(held, vector, asked, min_score, conditions, None)
        kept = [match for match in found.matches if match.id not in exclude][:top_k]
        cut = self.query_limit is not None and asked > self.query_limit and len(found.matches) == self.query_limit
        return SearchResult(kept, partial=len(kept) < top_k and (found.partial or cut))

    def _grouped(
        self,
        held: HandleT,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: frozenset[str],
        grouping: Grouping,
    ) -> SearchResult:
        """``top_k`` groups from the best candidates, at most the store's bound: the local store's bound of a
        filtered search (``filters.filtered_candidates``: 10,000 best-scoring images, fewer for a filter of
        over 20 constraints), S3 Vectors' 100 a query. A first query asks for a generous head and each
        widening (8x, up to the bound) asks again only while the groups are not complete. The answer is
        complete, ``partial`` false, when a query answered fewer candidates than it asked for (it saw every
        image that passes the filter and ``min_score``), or when it found ``top_k`` groups each of
        ``per_group`` matches: any group or match further down the ranking scores below all of those."""
        reach = filtered_candidates(conditions)
        if self.query_limit is not None:
            reach = min(reach, self.query_limit)
        asked = min(reach, max(8 * top_k * grouping.per_group, GROUPED_HEAD))
        while True:
            found = self._query(held, vector, asked, min_score, conditions, None)
            groups = group_matches([match for match in found.matches if match.id not in exclude], grouping, top_k)
            saw_all = not found.partial and len(found.matches) < asked
            full = len(groups) == top_k and all(len(group.matches) == grouping.per_group for group in groups)
            if saw_all or full or found.partial or asked == reach:  # found.partial: the store's own bound
                matches = [match for group in groups for match in group.matches]
                return SearchResult(matches, partial=not (saw_all or full), groups=groups)
            asked = min(reach, 8 * asked)

    def check_top_k(self, top_k: int) -> int:
        """1 to the ``max_top_k`` setting (the API checks it before embedding the query too)."""
        if not isinstance(top_k, int) or not 1 <= top_k <= self.settings.max_top_k:
            raise BadRequest(f"top_k: must be between 1 and {self.settings.max_top_k}", code="invalid_value")
        return top_k

    def open(self) -> None:  # optional: a store with nothing to open keeps it
        """Open now what would open on first use, so a store that cannot work is refused at start-up."""

    def close(self) -> None:  # optional: a store with nothing to release keeps it
        """Release files and connections; the store is not used afterwards."""

    # --- the primitives each store implements --------------------------------------------
    # ``held`` is what ``_reading`` / ``_writing`` yield beside the library: the store's own handle, ``HandleT``.
    @abstractmethod
    def _create_library(self, name: str, model_version: str, thumbnails: bool, threshold: float | None) -> Library: ...

    @abstractmethod
    def _list_libraries(self) -> list[Library]: ...

    @abstractmethod
    def _delete_library(self, name: str) -> None: ...

    @abstractmethod
    def _reading(self, name: str) -> AbstractContextManager[tuple[Library, HandleT]]:
        """The library (404 if missing) and a handle to read it."""

    @abstractmethod
    def _writing(self, name: str) -> AbstractContextManager[tuple[Library, HandleT]]:
        """The library held exclusively against other writers (in every process) for the block."""

    @abstractmethod
    def _existing_ids(self, held: HandleT, ids: list[str]) -> list[str]: ...

    @abstractmethod
    def _find_hashes(self, held: HandleT, hashes: list[str]) -> dict[str, Match]:
        """Stored images by content hash (score EXACT_SCORE)."""

    @abstractmethod
    def _insert(self, held: HandleT, images: list[NewImage]) -> None: ...

    @abstractmethod
    def _image(self, held: HandleT, image_id: str) -> Image | None: ...

    @abstractmethod
    def _thumbnail(self, held: HandleT, image_id: str) -> bytes | None: ...

    @abstractmethod
    def _vector(self, held: HandleT, image_id: str) -> np.ndarray | None: ...

    def _vectors(self, held: HandleT, image_ids: list[str]) -> dict[str, np.ndarray]:
        """The vectors of those of these images the library holds, by id (a store with a batched read
        overrides it)."""
        found = {image_id: self._vector(held, image_id) for image_id in image_ids}
        return {image_id: vector for image_id, vector in found.items() if vector is not None}

    @abstractmethod
    def _remove(self, held: HandleT, image_id: str) -> None: ...

    @abstractmethod
    def _replace_metadata(self, held: HandleT, image_id: str, metadata: dict[str, Any]) -> Image: ...

    @abstractmethod
    def _query(
        self,
        held: HandleT,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: str | None,
    ) -> SearchResult:
        """The ``top_k`` best matches passing ``conditions``, best first, without image ``exclude``."""

    @abstractmethod
    def _page(self, held: HandleT, limit: int, token: dict[str, Any] | None) -> ImagePage: ...

    @abstractmethod
    def _every_image(self, held: HandleT) -> list[Stored]:
        """Every image of the library, in any order (the callers check ``check_scan`` first)."""

    @abstractmethod
    def _remove_many(self, held: HandleT, images: list[Stored]) -> None:
        """Delete these images (held for writing), in as few writes as the store allows."""

    @abstractmethod
    def _stored_page(self, held: HandleT, limit: int, token: dict[str, Any] | None) -> StoredPage:
        """As ``_page``, each image with its vector and all the store keeps of it."""


# --- pieces of the algorithms -------------------------------------------------------------


def exact_match(image: NewImage, stored: dict[str, Match], accepted: dict[str, NewImage]) -> Match | None:
    if not image.content_hash:
        return None
    if image.content_hash in stored:
        return stored[image.content_hash]
    earlier = accepted.get(image.content_hash)
    return None if earlier is None else Match(earlier.id or "", EXACT_SCORE, earlier.metadata)


def in_batch(vector: np.ndarray, accepted: list[NewImage]) -> list[Match]:
    """The images accepted before in the same add call, as matches of ``vector`` (the copy tier reads them all)."""
    if not accepted:
        return []
    scores = scores_of(np.stack([image.vector for image in accepted]) @ vector)
    return [
        Match(image.id or "", float(score), image.metadata, image.perceptual_hash)
        for image, score in zip(accepted, scores, strict=True)
    ]


def copy_match(image: NewImage, candidates: list[Match]) -> Match | None:
    """The candidate whose perceptual hash is nearest the image's, if within ``COPY_DISTANCE`` bits (the
    better score breaks a tie); an image or candidate without a hash is never a copy."""
    if not image.perceptual_hash:
        return None
    near = [
        (distance, -candidate.score, position, candidate)
        for position, candidate in enumerate(candidates)
        if candidate.perceptual_hash
        and (distance := hash_distance(image.perceptual_hash, candidate.perceptual_hash)) <= COPY_DISTANCE
    ]
    return min(near)[3] if near else None


def best_in_batch(vector: np.ndarray, accepted: list[NewImage]) -> Match | None:
    """The closest of the images already accepted in the same add call (for dedup within a call)."""
    if not accepted:
        return None
    scores = scores_of(np.stack([image.vector for image in accepted]) @ vector)
    best = int(np.argmax(scores))
    return Match(accepted[best].id or "", float(scores[best]), accepted[best].metadata)


def group_matches(matches: list[Match], grouping: Grouping, top_k: int) -> list[Group]:
    """The first ``per_group`` matches (best first) of each of the first ``top_k`` values of the key; a
    match with no value of the key (``grouping.group_of``) is left out."""
    groups: dict[tuple[str, GroupValue], Group] = {}
    for match in matches:
        identity = group_of(match.metadata, grouping.key)
        if identity is None:
            continue
        group = groups.get(identity)
        if group is None:
            if len(groups) == top_k:
                continue
            group = groups[identity] = Group(match.metadata[grouping.key], [])
        if len(group.matches) < grouping.per_group:
            group.matches.append(match)
    return list(groups.values())


def better(first: Match | None, second: Match | None) -> Match | None:
    if first is None or (second is not None and second.score > first.score):
        return second
    return first


def matching(images: list[Stored], conditions: Filter) -> list[Stored]:
    """The images that pass a checked filter: the one evaluator (``filter_eval``) for both stores."""
    if not conditions:
        return images
    passes = compile_filter(conditions)
    return [stored for stored in images if passes(stored.filterable)]


def ordered_page(images: list[Stored], order: Order, limit: int, token: dict[str, Any] | None) -> ImagePage:
    """One page of the images in ``order``, after the position ``token`` names (``ordering.py``)."""
    ranked = sorted((sort_key(order, s.image.id, s.image.metadata), s.image) for s in images)
    start = page_after([key for key, _ in ranked], token, order)
    page = [image for _, image in ranked[start : start + limit]]
    more = start + limit < len(ranked)
    return ImagePage(page, encode_token(token_of(order, page[-1].id, page[-1].metadata)) if more else None)


def encode_token(position: dict[str, Any]) -> str:
    """An opaque page token: the store's resume position as URL-safe base64 JSON."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("next_token: not a token this API gave", code="invalid_next_token") from exc
    if not isinstance(position, dict) or not writable_as_utf8(position):
        raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
    return position


# --- the rules' errors, one wording for every store --------------------------------------


def check_model_version(library: Library, model_version: str) -> None:
    if library.model_version != model_version:
        raise Conflict(
            f"library {library.name!r} holds vectors of model {library.model_version}; this server embeds "
            f"with {model_version}, and vectors of two models do not compare. Serve {library.model_version} "
            "or create a new library",
            code=MODEL_VERSION_MISMATCH,
        )


def check_library_quota(count: int, settings: Settings) -> None:
    if count >= settings.max_libraries:
        raise QuotaExceeded(
            f"libraries: the quota of {settings.max_libraries} libraries is reached; delete one first "
            "(setting IMSIM_MAX_LIBRARIES)",
            code="library_quota_exceeded",
        )


def check_image_quota(name: str, count: int, adding: int, settings: Settings) -> None:
    if count + adding > settings.max_images_per_library:
        raise QuotaExceeded(
            f"images: library {name!r} holds {count} images; the quota is {settings.max_images_per_library} "
            "images per library (setting IMSIM_MAX_IMAGES_PER_LIBRARY)",
            code=IMAGE_QUOTA_EXCEEDED,
        )


def library_exists(name: str) -> Conflict:
    return Conflict(f"name: a library named {name!r} already exists", code="library_exists")


def library_not_found(name: str) -> NotFound:
    return NotFound(f"library {name!r} does not exist", code=LIBRARY_NOT_FOUND)


def image_exists(name: str, image_id: str, where: str = "") -> Conflict:
    return Conflict(
        f"{at(where, 'id')}: library {name!r} already holds an image with id {image_id!r}; delete it first or "
        "use another id",
        code=IMAGE_EXISTS,
    )


def image_not_found(name: str, image_id: str, where: str = "") -> NotFound:
    prefix = f"{at(where, 'id')}: " if where else ""
    return NotFound(f"{prefix}library {name!r} holds no image with id {image_id!r}", code="image_not_found")
