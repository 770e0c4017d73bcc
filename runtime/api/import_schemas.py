"""Request and response bodies of bulk imports, with the examples the API Explorer shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtime.api.library_schemas import DedupThreshold
from runtime.api.schemas import STRICT_REQUEST
from runtime.inputs.images import IMAGE_SUFFIXES

SOURCE_DOC = (
    f"Every image object under this S3 prefix ({' '.join(sorted(IMAGE_SUFFIXES))}, in any case: the formats "
    "the API decodes; other objects and hidden files are counted as ignored). An image's id is its key "
    "relative to the prefix, with `/` written `:` (`shoes/red.jpg` -> `shoes:red.jpg`)."
)
MANIFEST_DOC = (
    "A JSONL file (s3://, https:// or http://, fetched under the same rules as image URLs): one JSON object per line, "
    'each a single add\'s fields: `{"url": "...", "id": "sku-1", "metadata": {...}}`. '
    "An image without an id is named by its content hash."
)


class ImportRequest(BaseModel):
    model_config = STRICT_REQUEST  # one strictness for every route: no "false" for false, no "0.5" for 0.5

    source: str | None = Field(None, description=SOURCE_DOC)
    manifest: str | None = Field(None, description=MANIFEST_DOC)
    dedup: bool = Field(
        True,
        description="Leave out duplicates (exact files and copies; similar images with a threshold) of the "
        "library's images and of each other.",
    )
    threshold: DedupThreshold = None


class DuplicateTiers(BaseModel):
    exact: int = Field(description="The same bytes (content hash) as an image in the library or earlier in the import.")
    copies: int = Field(  # named "copy" in the answers: a field "copy" would hide BaseModel.copy
        0,
        alias="copy",
        description="The same picture re-encoded, resized or lightly edited (perceptual hash within COPY_DISTANCE).",
    )
    similar: int = Field(description="An embedding at or above the threshold (only with one).")


class IgnoreReasons(BaseModel):
    not_an_image_name: int = Field(description="A file or object whose name has no image format's suffix.")
    hidden_file: int = Field(description="A hidden file (`.DS_Store`, `._IMG_0001.jpg`), whatever its name.")
    not_a_regular_file: int = Field(
        0, description="A local folder's FIFO, socket or device (the command-line import): never read."
    )
    link_outside_folder: int = Field(
        0, description="A local folder's symlink to a file outside the folder (the command-line import): not followed."
    )


class ImportCounts(BaseModel):
    total: int | None = Field(None, description="Items in the source, once listed (null until then).")
    processed: int
    added: int
    duplicates: int = Field(description="Exact or similar duplicates: not added.")
    duplicates_by_tier: DuplicateTiers
    already_present: int = Field(description="Ids the library already held (a re-run): not added again.")
    ignored: int = Field(description="Files or objects of a folder or prefix that are not images to import.")
    ignored_by_reason: IgnoreReasons
    failed: int = Field(description="Items that could not be added; each is listed in `failures`.")


class ImportFailure(BaseModel):
    item: str = Field(description="The item: its id, its URL, or its manifest line.")
    field: str
    code: str
    message: str = Field(description="The reason, in the words a single add uses.")


class ListedFailure(ImportFailure):
    position: int | None = Field(
        None, description="The item's place in the source (a manifest's line is position + 1)."
    )


class ImportFailuresResponse(BaseModel):
    failures: list[ListedFailure]
    next_token: str | None = Field(
        description="Give it back for the next page; null once the import has ended and no failure follows."
    )


class ImportResponse(BaseModel):
    import_id: str
    library: str
    status: Literal["running", "interrupted", "succeeded", "failed", "cancelled"]
    source: dict[str, str]
    dedup: bool
    threshold: float | None
    counts: ImportCounts
    start_time: datetime
    end_time: datetime | None
    results: str | None = Field(description="Where the per-item results are (a file, or an s3:// prefix on AWS).")
    error: str | None = Field(description="Why a failed import stopped (not an item's problem: those are failures).")
    failures: list[ImportFailure] = Field(
        description="The first 100 failed items; every one is listed by `GET .../imports/{id}/failures`."
    )


class ImportListResponse(BaseModel):
    imports: list[ImportResponse]


IMPORT_EXAMPLES: dict[str, Any] = {
    "prefix": {"summary": "Every image under an S3 prefix", "value": {"source": "s3://my-photos/catalog/2025/"}},
    "manifest": {
        "summary": "A JSONL manifest",
        "value": {"manifest": "s3://my-photos/catalog.jsonl", "dedup": True, "threshold": 0.97},
    },
}
RUNNING = {
    "import_id": "5f0c6e0a9b8d4c1e8f7a6b5c4d3e2f10",
    "library": "products",
    "status": "running",
    "source": {"source": "s3://my-photos/catalog/2025/"},
    "dedup": True,
    "threshold": None,
    "counts": {
        "total": 120000,
        "processed": 6400,
        "added": 6302,
        "duplicates": 71,
        "duplicates_by_tier": {"exact": 40, "similar": 31},
        "already_present": 0,
        "ignored": 8,
        "ignored_by_reason": {
            "not_an_image_name": 6,
            "hidden_file": 2,
            "not_a_regular_file": 0,
            "link_outside_folder": 0,
        },
        "failed": 19,
    },
    "start_time": "2025-06-01T08:30:00Z",
    "end_time": None,
    "results": "s3://imsim-import-results/imports/5f0c6e0a9b8d4c1e8f7a6b5c4d3e2f10/",
    "error": None,
    "failures": [
        {
            "item": "shoes:red.jpg",
            "field": "url",
            "code": "url_not_image",
            "message": "url: the URL's content is not an image",
        }
    ],
}
IMPORT_ANSWERS = {"running": {"summary": "An import", "value": RUNNING}}
LIST_ANSWERS = {"imports": {"summary": "The library's imports", "value": {"imports": [RUNNING]}}}
FAILURES_ANSWERS = {
    "page": {
        "summary": "A page of failed items",
        "value": {
            "failures": [
                {
                    "item": "shoes:red.jpg",
                    "field": "url",
                    "code": "url_not_image",
                    "message": "url: the URL's content is not an image",
                    "position": 41,
                }
            ],
            "next_token": "eyJhZnRlciI6MTcyMDB9",
        },
    }
}
