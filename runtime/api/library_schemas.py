"""Request and response bodies of the library API, with the examples the API Explorer shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from runtime.api.schemas import EXAMPLE_PNG, IMG_DOC, STRICT_REQUEST, TEXT_DOC, URL_DOC, ExamplesByStatus, ImageValue
from runtime.libraries.examples import MAX_EXAMPLES
from runtime.libraries.filters import MAX_FILTER_CONSTRAINTS, MAX_FILTER_DEPTH, MAX_FILTER_LIST, MAX_FILTERED_CANDIDATES
from runtime.libraries.grouping import MAX_PER_GROUP

NAME_DOC = "Library name: 1 to 64 letters (any script, Chinese included), digits or underscores; unique."
ID_DOC = (
    "Image id: 1 to 128 letters, digits or _ - . : @ (not only dots, not only invisible fillers); unique in "
    "the library. NFC-normalised, like names."
)
METADATA_DOC = (
    "A JSON object, at most 4 KB and 10 levels deep, returned with every match. Top-level keys take 1 to 63 "
    "characters and may not start with `$`. Its top-level strings, numbers, booleans and lists of them (at "
    "most 40 keys, 1.5 KB) are what `filter` matches; nest long values in an object (stored, not filterable)."
)
FILTER_DOC = (
    'The S3 Vectors filter language over top-level metadata: `{"color": "red"}` (equality), operators '
    '`$eq $ne $gt $gte $lt $lte $in $nin $exists $startsWith` under a key (`{"price": {"$lt": 50}}`), and `$and` / '
    "`$or` over lists of filters. A stored list matches when any element does; `true` is not `1`. "
    f"At most {MAX_FILTER_CONSTRAINTS} constraints (an operator on a key, or an empty filter, each), "
    f"{MAX_FILTER_DEPTH} levels of `$and` / `$or` and {MAX_FILTER_LIST} values in an `$in` / `$nin` list. "
    "The same results on both stores; see docs/libraries.md."
)
MAX_BATCH_ADD = 32
DedupThreshold = Annotated[
    float | None,
    Field(
        description="Also refuse `similar` images: those scoring at or above this, 0 to 1. Default: the "
        "library's `threshold`, else the setting IMSIM_DEDUP_THRESHOLD, else none (only `exact` and `copy` "
        "duplicates are refused)."
    ),
]
"""The ``threshold`` of an add and of an import."""
SCORE_DOC = "(1 + cosine) / 2, in [0, 1]: 1 is the same image."
VERSION = "ViT-B-32/laion2b_s34b_b79k"
CREATED = "2025-06-01T08:30:00Z"


class CreateLibraryRequest(BaseModel):
    model_config = STRICT_REQUEST

    name: str = Field(description=NAME_DOC)
    thumbnails: bool | None = Field(
        None,
        description="Keep a small WebP (160 px, at most 8 KB) of each image added, served by "
        "`GET /libraries/{name}/images/{id}/thumbnail` (the library page shows them). Default: yes on the "
        "local store, no on S3 Vectors (each takes up to 11 KB of a vector's 40 KB of metadata).",
    )
    threshold: float | None = Field(
        None,
        description="The `similar` threshold (0 to 1) of an add or import into this library that gives none. "
        "Default: none (the setting IMSIM_DEDUP_THRESHOLD, if set): adds refuse only `exact` and `copy` duplicates.",
    )


class NewImageFields(BaseModel):
    """The fields of one image to add, in a single add and in each image of a batch."""

    model_config = STRICT_REQUEST

    url: str | None = Field(None, description=URL_DOC)
    img: ImageValue = Field(None, description=IMG_DOC)
    id: str | None = Field(None, description=ID_DOC + " Generated when absent.")
    metadata: dict[str, Any] | None = Field(None, description=METADATA_DOC)


class BatchImage(NewImageFields):
    """One image of a batch add: a single add's image fields."""


class AddImageRequest(NewImageFields):
    """One image (``url`` or ``img``) with an optional id and metadata, or ``images``: a batch of them."""

    images: list[BatchImage] | None = Field(
        None,
        description=f"Batch add: 1 to {MAX_BATCH_ADD} images, embedded in one forward pass; the answer has one "
        "result per image, in order. `dedup` and `threshold` apply to each.",
    )
    dedup: bool = Field(
        True,
        description="Refuse the image when the library holds the same file (`exact`) or the same picture "
        "re-encoded, resized or lightly edited (`copy`), and, with a `threshold`, an image scoring at or above "
        "it (`similar`); also within a batch.",
    )
    threshold: DedupThreshold = None


class UpdateImageRequest(BaseModel):
    model_config = STRICT_REQUEST

    metadata: dict[str, Any] = Field(description="The new metadata; replaces the old whole. " + METADATA_DOC)


class ExampleInput(BaseModel):
    """One example of a search by examples: a stored image's ``id``, an image (``url`` or ``img``) or a ``text``."""

    model_config = STRICT_REQUEST

    id: str | None = Field(None, description="An image of the library, by id (left out of the matches).")
    url: str | None = Field(None, description=URL_DOC)
    img: str | None = Field(None, description="The image as base64 (a data: URL's prefix is dropped).")
    text: str | None = Field(None, description=TEXT_DOC)


EXAMPLES_DOC = (
    "More like these, not those: each example is a stored image's `id`, an image (`url`, `img`) or a `text`. "
    "The query is normalise(2 x mean(positive) - mean(negative)) (mean(positive) without negatives), "
    f"searched as any other; stored examples are left out of the matches. 1 to {MAX_EXAMPLES} examples in all, "
    "at least one positive; not with `url`, `img`, `text` or `id`."
)
GROUP_BY_DOC = (
    "Group the matches by this top-level metadata key: the best `per_group` of each value (a string, number or "
    "boolean), `top_k` groups, best group first, in `groups`. Images without a value for the key (missing, null, "
    "a list or an object) are left out."
)


class SearchRequest(BaseModel):
    """Search by an image (``url`` or ``img``), by ``text``, by a stored image's ``id``, or by examples."""

    model_config = STRICT_REQUEST

    url: str | None = Field(None, description=URL_DOC)
    img: ImageValue = Field(None, description=IMG_DOC)
    text: str | None = Field(None, description=TEXT_DOC)
    id: str | None = Field(
        None, description='"More like this": search by an image of the library, by id; it is left out of the matches.'
    )
    top_k: int | None = Field(
        None, description="How many matches (default 10): 1 to the server's limit, 100 unless IMSIM_MAX_TOP_K says."
    )
    min_score: float | None = Field(None, description="Leave out matches scoring below this (0 to 1).")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    positive: list[ExampleInput] | None = Field(None, description="Examples to search like. " + EXAMPLES_DOC)
    negative: list[ExampleInput] | None = Field(None, description="Examples to search away from (with `positive`).")
    group_by: str | None = Field(None, description=GROUP_BY_DOC)
    per_group: int | None = Field(
        None, description=f"With `group_by`: matches per group, 1 to {MAX_PER_GROUP} (default 1)."
    )


class CountRequest(BaseModel):
    model_config = STRICT_REQUEST

    filter: dict[str, Any] | None = Field(
        None, description="Count the images that pass it (all without). " + FILTER_DOC
    )


class CountResponse(BaseModel):
    count: int = Field(description="Images that pass the filter.")


class DeleteImagesRequest(BaseModel):
    model_config = STRICT_REQUEST

    filter: dict[str, Any] = Field(
        description="Delete the images that pass it (required; `{}` deletes every image). " + FILTER_DOC
    )
    dry_run: bool = Field(False, description="true: count them and delete nothing.")


class DeleteImagesResponse(BaseModel):
    count: int = Field(description="Images that pass the filter when the library was held.")
    deleted: int = Field(description="Images deleted: `count`, or 0 for a dry run.")
    dry_run: bool


class LibraryResponse(BaseModel):
    name: str
    create_time: datetime = Field(description="When the library was created (UTC, ISO 8601).")
    image_count: int
    model_version: str = Field(description="The model whose vectors the library holds; other models are refused.")
    thumbnails: bool = Field(description="Whether it keeps a thumbnail of each image it adds.")
    threshold: float | None = Field(
        None, description="The `similar` threshold of an add that gives none (null: none, or the server's setting)."
    )


class LibraryListResponse(BaseModel):
    libraries: list[LibraryResponse]


class LibraryDeletedResponse(BaseModel):
    name: str
    deleted: bool = True


class MatchResponse(BaseModel):
    id: str
    score: float = Field(ge=0, le=1, description=SCORE_DOC)
    metadata: dict[str, Any]


class ImageAddedResponse(BaseModel):
    status: Literal[1] = 1
    message: str = "Image added."
    id: str
    score: float | None = Field(
        description="Score of the closest image the library held (null: dedup off, or the library was empty)."
    )


class DuplicateResponse(BaseModel):
    status: Literal[0] = 0
    message: str = "Similar image found."
    match: MatchResponse = Field(description="The near-duplicate already in the library; nothing was added.")
    exact: bool = Field(
        description="True: the same file (SHA-256 of its bytes) is in the library, found before any model work "
        "(`tier` is `exact`)."
    )
    tier: Literal["exact", "copy", "similar"] = Field(
        description="`exact`: the same file; `copy`: the same picture re-encoded, resized or lightly edited "
        "(perceptual hash); `similar`: an image scoring at or above the threshold."
    )


class ItemErrorResponse(BaseModel):
    status: Literal[-1] = -1
    message: str = Field(description="The field at fault and the reason, as a single add would answer.")
    code: str


class BatchAddResponse(BaseModel):
    results: list[ImageAddedResponse | DuplicateResponse | ItemErrorResponse] = Field(
        description="One result per image, in the order given: status 1 added, 0 duplicate, -1 refused."
    )


class ImageResponse(BaseModel):
    id: str
    metadata: dict[str, Any]
    create_time: datetime


class ImageListResponse(BaseModel):
    images: list[ImageResponse] = Field(description="In id order, or in the order `order_by` asks.")
    next_token: str | None = Field(
        description="Pass as `next_token` for the next page; null on the last. Images added or deleted between "
        "pages do not make the listing repeat or skip the others."
    )


class ImageDeletedResponse(BaseModel):
    id: str
    deleted: bool = True


class GroupResponse(BaseModel):
    value: str | bool | int | float = Field(description="The `group_by` key's value that the group's images share.")
    matches: list[MatchResponse] = Field(description=f"Best first, at most `per_group` (1 to {MAX_PER_GROUP}).")


class SearchResponse(BaseModel):
    matches: list[MatchResponse] = Field(description="Best first; with `group_by`, the groups' matches in order.")
    partial: bool = Field(
        False,
        description=f"true: a filtered search on the local store checked its bound of best-scoring images "
        f"({MAX_FILTERED_CANDIDATES:,}, fewer for a filter of over 20 constraints: docs/libraries.md) and fewer "
        "than `top_k` passed the filter; the matches are the best that pass, and "
        "more may pass further down the ranking (narrow the query or the filter). With `group_by`: the "
        "candidates seen (that bound locally, 100 on AWS) held fewer than `top_k` groups of `per_group`; more "
        "may follow further down. On AWS false otherwise.",
    )
    groups: list[GroupResponse] | None = Field(
        None, description="With `group_by` only: best group first (a group ranks by its best match), at most `top_k`."
    )
    model_version: str


# --- examples (the API Explorer shows them) -----------------------------------------------

NAME_EXAMPLES = {
    "latin": {"summary": "A name", "value": "products"},
    "chinese": {"summary": "A Chinese name", "value": "商品图库"},
}
ID_EXAMPLES = {"given": {"summary": "An id you chose", "value": "sku-1042"}}
CREATE_EXAMPLES = {
    "latin": {"summary": "Create a library", "value": {"name": "products"}},
    "chinese": {"summary": "Names may use any script", "value": {"name": "商品图库"}},
    "threshold": {
        "summary": "Adds refuse similar images by default",
        "value": {"name": "products", "threshold": 0.98},
    },
}
ADD_EXAMPLES = {
    # First: Swagger UI fills the body with it, and it needs no internet.
    "img": {
        "summary": "Add base64, with an id and metadata",
        "value": {"img": EXAMPLE_PNG, "id": "sku-1042", "metadata": {"color": "red", "price": 59}},
    },
    "url": {"summary": "Add by URL, id generated", "value": {"url": "https://example.com/shoe.jpg"}},
    "no-dedup": {"summary": "Add without the near-duplicate check", "value": {"img": EXAMPLE_PNG, "dedup": False}},
    "threshold": {"summary": "Also refuse similar images", "value": {"img": EXAMPLE_PNG, "threshold": 0.98}},
    "batch": {
        "summary": "Batch add: up to 32 images, one result each",
        "value": {
            "images": [
                {"url": "https://example.com/shoe.jpg", "id": "sku-1042", "metadata": {"color": "red", "price": 59}},
                {"img": EXAMPLE_PNG, "id": "sku-1043", "metadata": {"color": "blue", "price": 45}},
            ]
        },
    },
}
UPDATE_EXAMPLES = {
    "replace": {
        "summary": "Replace an image's metadata",
        "value": {"metadata": {"color": "red", "price": 49, "tags": ["sale", "summer"]}},
    }
}
LIMIT_EXAMPLES = {"hundred": {"summary": "100 images a page", "value": 100}}
ORDER_BY_EXAMPLES = {"date": {"summary": "By the metadata key date (ISO dates or numbers)", "value": "date"}}
ORDER_EXAMPLES = {"newest": {"summary": "Descending: newest first", "value": "desc"}}
COUNT_EXAMPLES = {
    "filter": {"summary": "Count red shoes under 60", "value": {"filter": {"color": "red", "price": {"$lt": 60}}}},
    "prefix": {"summary": "Count by an id prefix in metadata", "value": {"filter": {"sku": {"$startsWith": "AB-"}}}},
    "all": {"summary": "Count every image", "value": {}},
}
DELETE_IMAGES_EXAMPLES = {
    "dry-run": {
        "summary": "How many would go (nothing deleted)",
        "value": {"filter": {"discontinued": True}, "dry_run": True},
    },
    "delete": {
        "summary": "Delete the images of an album",
        "value": {"filter": {"album": {"$startsWith": "2019/"}}},
    },
}
TOKEN_EXAMPLES = {"next": {"summary": "The next_token of the page before", "value": "eyJhZnRlciI6InNrdS0xMDQyIn0"}}
SEARCH_EXAMPLES = {
    "text": {"summary": "Search by text", "value": {"text": "a red running shoe", "top_k": 10}},
    "image": {"summary": "Search by image", "value": {"url": "https://example.com/query.jpg", "top_k": 5}},
    "filter": {
        "summary": "Filter on metadata, minimum score",
        "value": {"img": EXAMPLE_PNG, "filter": {"color": "red"}, "min_score": 0.8},
    },
    "operators": {
        "summary": "Filter with operators",
        "value": {
            "text": "a red running shoe",
            "filter": {
                "price": {"$gte": 20, "$lt": 60},
                "$or": [{"color": {"$in": ["red", "orange"]}}, {"tags": "sale"}],
                "discontinued": {"$exists": False},
            },
        },
    },
    "like": {"summary": "More like a stored image", "value": {"id": "sku-1042", "top_k": 5}},
    "examples": {
        "summary": "More like these, not those (ids, images, texts)",
        "value": {
            "positive": [{"id": "sku-1042"}, {"text": "a red running shoe"}],
            "negative": [{"id": "sku-1043"}, {"img": EXAMPLE_PNG}],
            "top_k": 10,
        },
    },
    "group_by": {
        "summary": "The best 2 of each album, 5 albums",
        "value": {"text": "a red running shoe", "group_by": "album", "per_group": 2, "top_k": 5},
    },
}
LIBRARY = {
    "name": "products",
    "create_time": CREATED,
    "image_count": 1042,
    "model_version": VERSION,
    "thumbnails": True,
    "threshold": None,
}
MATCH = {"id": "sku-1042", "score": 0.9731, "metadata": {"color": "red", "price": 59}}
LIBRARY_ANSWERS = {"library": {"summary": "A library", "value": LIBRARY}}
LIST_ANSWERS = {"list": {"summary": "All libraries", "value": {"libraries": [LIBRARY]}}}
LIBRARY_DELETED_ANSWERS = {"deleted": {"summary": "Deleted", "value": {"name": "products", "deleted": True}}}
ADD_ANSWERS = {
    "added": {"summary": "Added", "value": {"status": 1, "message": "Image added.", "id": "sku-1042", "score": 0.7412}},
    "duplicate": {
        "summary": "A copy (re-encoded, resized) is in the library: nothing added",
        "value": {
            "status": 0,
            "message": "Similar image found.",
            "match": MATCH,
            "exact": False,
            "tier": "copy",
        },
    },
    "similar": {
        "summary": "With a threshold: a similar image is in the library",
        "value": {"status": 0, "message": "Similar image found.", "match": MATCH, "exact": False, "tier": "similar"},
    },
    "exact": {
        "summary": "The same file is in the library: nothing added, no model work",
        "value": {
            "status": 0,
            "message": "Similar image found.",
            "match": {**MATCH, "score": 1.0},
            "exact": True,
            "tier": "exact",
        },
    },
    "batch": {
        "summary": "Batch add: one result per image, in order",
        "value": {
            "results": [
                {"status": 1, "message": "Image added.", "id": "sku-1042", "score": 0.7412},
                {"status": 0, "message": "Similar image found.", "match": MATCH, "exact": False, "tier": "copy"},
                {
                    "status": -1,
                    "message": "images[2].img: not valid base64 (Incorrect padding)",
                    "code": "invalid_base64",
                },
            ]
        },
    },
}
IMAGE = {"id": "sku-1042", "metadata": MATCH["metadata"], "create_time": CREATED}
IMAGE_ANSWERS = {"image": {"summary": "An image", "value": IMAGE}}
IMAGE_LIST_ANSWERS = {
    "page": {
        "summary": "A page of images, and the token of the next",
        "value": {"images": [IMAGE], "next_token": "eyJhZnRlciI6InNrdS0xMDQyIn0"},
    },
    "last": {"summary": "The last page", "value": {"images": [IMAGE], "next_token": None}},
}
COUNT_ANSWERS = {"count": {"summary": "The images that pass", "value": {"count": 42}}}
DELETE_IMAGES_ANSWERS = {
    "dry-run": {"summary": "A dry run: 42 would go", "value": {"count": 42, "deleted": 0, "dry_run": True}},
    "deleted": {"summary": "42 deleted", "value": {"count": 42, "deleted": 42, "dry_run": False}},
}
IMAGE_DELETED_ANSWERS = {"deleted": {"summary": "Deleted", "value": {"id": "sku-1042", "deleted": True}}}
GROUPED = [
    {"id": "sku-1042", "score": 0.9731, "metadata": {"album": "summer", "color": "red"}},
    {"id": "sku-1077", "score": 0.9412, "metadata": {"album": "summer", "color": "orange"}},
    {"id": "sku-2001", "score": 0.9025, "metadata": {"album": "autumn", "color": "red"}},
]
SEARCH_ANSWERS = {
    "matches": {
        "summary": "Matches, best first",
        "value": {"matches": [MATCH], "partial": False, "model_version": VERSION},
    },
    "groups": {
        "summary": "With group_by: groups, best first",
        "value": {
            "matches": GROUPED,
            "partial": False,
            "groups": [{"value": "summer", "matches": GROUPED[:2]}, {"value": "autumn", "matches": GROUPED[2:]}],
            "model_version": VERSION,
        },
    },
}


ERROR_TEXTS = {
    "invalid_library_name": (
        400,
        "Not a library name",
        "name: 'my-library!' is not a library name; use 1 to 64 letters (any script), digits or underscores, "
        "at least one of them visible",
    ),
    "metadata_too_large": (400, "Metadata over the limit", "metadata: 5210 bytes of JSON; at most 4096"),
    "invalid_filter": (400, "Bad filter operand", "filter.tags: takes a string, number or boolean"),
    "invalid_metadata": (
        400,
        "Metadata too deep",
        "metadata: nested more than 10 levels deep (objects and lists, the metadata object being level 1)",
    ),
    "invalid_image_id": (
        400,
        "Not an image id",
        "id: 'sku 1042' is not an image id; use 1 to 128 letters, digits or _ - . : @ (not only dots, at least "
        "one visible character)",
    ),
    "invalid_next_token": (400, "Not a page token", "next_token: not a token this API gave"),
    "invalid_value": (400, "Not an order", "order: 'newest'; use asc or desc"),
    "batch_too_large": (400, "Too many images", "images: 33 images; at most 32 per request"),
    "library_not_found": (404, "No such library", "library 'products' does not exist"),
    "image_not_found": (404, "No such image", "library 'products' holds no image with id 'sku-1042'"),
    "thumbnail_not_found": (404, "No thumbnail", "image 'sku-1042' of library 'products' has no thumbnail"),
    "libraries_disabled": (404, "Libraries off", "libraries are not enabled on this server (setting IMSIM_STORE)"),
    "library_exists": (409, "Name taken", "name: a library named 'products' already exists"),
    "library_quota_exceeded": (
        409,
        "Library quota reached",
        "libraries: the quota of 10 libraries is reached; delete one first (setting IMSIM_MAX_LIBRARIES)",
    ),
    "image_exists": (
        409,
        "Id taken",
        "id: library 'products' already holds an image with id 'sku-1042'; delete it first or use another id",
    ),
    "image_quota_exceeded": (
        409,
        "Image quota reached",
        (
            "images: library 'products' holds 100000 images; the quota is 100000 images per library "
            "(setting IMSIM_MAX_IMAGES_PER_LIBRARY)"
        ),
    ),
    "model_version_mismatch": (
        409,
        "Library of another model",
        (
            f"library 'products' holds vectors of model ViT-B-32/openai; this server embeds with {VERSION}, "
            "and vectors of two models do not compare. Serve ViT-B-32/openai or create a new library"
        ),
    ),
    "invalid_export": (
        400,
        "Not an export",
        "line 1: format_version 2; this release reads version 1",
    ),
    "store_error": (502, "The store failed", "library store: S3 Vectors PutVectors failed (AccessDeniedException)"),
    "scan_too_large": (
        409,
        "Library too large to read whole",
        "filter: library 'products' holds 12000 images; this reads every image, and this store reads at most "
        "10000 (setting IMSIM_MAX_SCAN_IMAGES). Use search with a filter, or list the images a page at a time",
    ),
    "library_busy": (
        503,
        "Library busy (retry after Retry-After seconds)",
        "library 'products' is busy with other writes; try again",
    ),
    "store_unavailable": (
        503,
        "Data directory in use",
        "data_dir data: in use by another server process; run one server per data directory",
    ),
    "store_damaged": (
        503,
        "Database damaged (restore it)",
        "data/libraries.sqlite3: 0 bytes: the file was emptied (its libraries are not in it); stop the server and "
        "restore the file from a copy (docs/libraries.md, 'Backup and restore')",
    ),
    "store_read_only": (
        503,
        "Database read-only",
        "data/libraries.sqlite3: cannot be written (attempt to write a readonly database)",
    ),
    "storage_full": (
        507,
        "Disk full (free space and retry)",
        "data/libraries.sqlite3: the disk is full (database or disk is full); nothing was written and everything "
        "acknowledged before is kept. Free space on the disk and retry",
    ),
}
STORE_FAULTS = ["store_unavailable", "store_damaged", "store_read_only"]
"""What any library call of the local store may meet: its data directory or database unusable."""
WRITE_FAULTS = [*STORE_FAULTS, "storage_full"]


def error_examples(codes: list[str], *, write: bool) -> ExamplesByStatus:
    """Examples of these errors by HTTP status; library writes carry ``"status": -1``."""
    by_status: ExamplesByStatus = {}
    for code in codes:
        status, summary, message = ERROR_TEXTS[code]
        value: dict[str, Any] = {"message": message, "code": code, **({"status": -1} if write else {})}
        by_status.setdefault(status, {})[code] = {"summary": summary, "value": value}
    return by_status


def utc(timestamp: float) -> datetime:
    """A stored time (seconds since the epoch) as the answers' ``*_time`` fields give it."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


# --- GET /libraries/{name}/duplicates ------------------------------------------------------


class DuplicateImageResponse(BaseModel):
    id: str
    metadata: dict[str, Any]
    width: int | None = Field(
        description="The original picture's width in pixels (null: added before sizes were kept)."
    )
    height: int | None


class DuplicateGroupResponse(BaseModel):
    tier: Literal["exact", "copy", "similar"] = Field(
        description="`exact`: the same file; `copy`: the same picture (perceptual hash); `similar`: scores at or "
        "above `threshold`."
    )
    keeper: DuplicateImageResponse = Field(description="The one to keep: the largest picture, then the most metadata.")
    others: list[DuplicateImageResponse] = Field(description="The rest of the group, in id order.")


class DuplicatesResponse(BaseModel):
    groups: list[DuplicateGroupResponse] = Field(description="Exact groups first, then copies, then similar images.")
    next_token: str | None = Field(description="Pass as `next_token` for the next page of groups; null on the last.")
    scanned: int = Field(description="How many images the scan read.")


DUPLICATES_THRESHOLD_EXAMPLES = {
    "none": {"summary": "Exact and copies only", "value": None},
    "similar": {"summary": "Also images scoring 0.98 or more", "value": 0.98},
}
DUPLICATE_IMAGE = {"id": "sku-1042", "metadata": MATCH["metadata"], "width": 2400, "height": 1600}
DUPLICATES_ANSWERS = {
    "groups": {
        "summary": "A group of copies, its keeper the largest",
        "value": {
            "groups": [
                {
                    "tier": "copy",
                    "keeper": DUPLICATE_IMAGE,
                    "others": [{"id": "sku-1042-small", "metadata": {}, "width": 600, "height": 400}],
                }
            ],
            "next_token": None,
            "scanned": 1042,
        },
    }
}
