"""What an import reads: a local folder, an ``s3://`` prefix, or a JSONL manifest, as a list of items.

Each item is one image to add: where its bytes are (``location``: a file path, an ``s3://`` or an
``https://`` URL), its id (or None: the image's content hash becomes its id, so adding it twice is
idempotent) and its metadata. A manifest line that cannot be used is still an item, carrying its
``problem``: the import reports it and goes on.

Request-level problems (a bucket outside the allow list, a manifest that cannot be fetched) raise
an ``ApiError`` before anything is imported.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from runtime.errors import ApiError, BadRequest, InvalidInput
from runtime.inputs.fetch import S3_DENIED_CODES, S3_MISSING_CODES, UrlFetcher
from runtime.inputs.images import IMAGE_SUFFIXES
from runtime.libraries.values import LONE_SURROGATE, unwritable_field
from runtime.settings import Settings

MANIFEST_FIELDS = frozenset({"url", "id", "metadata"})
TOO_LONG_FIELD = "__line_bytes__"
"""What ``bounded_lines`` leaves of an over-long line: the worker reports it as that item's failure."""
MAX_MANIFEST_LINE_BYTES = 64 * 1024
"""One image's url, id and metadata: far more than the rules let them hold (a URL of 8 KB, 4 KB of
metadata), and under a Distributed Map batch's input bound, so a long line is its own item's failure
and never breaks the batch it is in (infra/imports_stack.py MAX_INPUT_BYTES_PER_BATCH)."""
LINE_CHUNK_BYTES = 64 * 1024
"""How much of an over-long line is read at a time while it is counted."""
PATH_SEPARATOR_IN_ID = ":"
"""Image ids may not hold ``/``: a key ``shoes/red.jpg`` under the prefix becomes the id ``shoes:red.jpg``."""


@dataclass(frozen=True)
class ImportItem:
    position: int
    """0-based order in the source (a manifest's line number is ``position + 1``)."""
    location: str = ""
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: dict[str, str] | None = None
    """A manifest line that cannot be used: ``{"field", "code", "message"}``."""
    ignored: str | None = None
    """Why a listed file or object is not imported (``counts.IGNORE_REASONS``); counted, not read."""

    @property
    def name(self) -> str:
        """How results name the item: its id, else its location, else its line."""
        return self.id or self.location or f"line {self.position + 1}"

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value not in (None, "", {})} | {
            "position": self.position
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportItem:
        return cls(**data)


def ignore_reason(name: str) -> str | None:
    """Why a file or object of this name is not imported, or None: it is one to import.

    Images are named by the suffixes of the formats the decoder accepts (``inputs.images.IMAGE_SUFFIXES``,
    any case); hidden files (``.DS_Store``, macOS's ``._IMG_0001.jpg``) are left out whatever their name."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if base.startswith("."):
        return "hidden_file"
    if os.path.splitext(base)[1].lower() not in IMAGE_SUFFIXES or name.endswith("/"):
        return "not_an_image_name"
    return None


def listed_item(position: int, location: str, relative: str) -> ImportItem:
    """A file or object a folder or prefix lists: its id is its path relative to the folder or prefix."""
    return ImportItem(position, location, id_of_path(relative), ignored=ignore_reason(relative))


def id_of_path(relative: str) -> str:
    """The image id of a file or object: its path relative to the folder or prefix."""
    return relative.strip("/").replace("/", PATH_SEPARATOR_IN_ID)


# --- local folder --------------------------------------------------------------------------


def folder_items(folder: str | Path) -> Iterator[ImportItem]:
    """Every file under ``folder`` (recursive, sorted, symlinked folders not followed); those that are
    not images to import carry why (``ignored``): by their name, or because they are no regular file
    (a FIFO named ``*.png`` would block its read forever) or a symlink leading out of the folder."""
    root = Path(folder)
    if not root.is_dir():
        raise BadRequest(f"source: {folder} is not a folder", code="invalid_source")
    real_root = os.path.realpath(root)
    position = 0
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            item = listed_item(position, str(path), path.relative_to(root).as_posix())
            if item.ignored is None:
                item = replace(item, ignored=folder_file_reason(path, real_root))
            yield item
            position += 1


def folder_file_reason(path: Path, real_root: str) -> str | None:
    """Why a file a folder lists is not read: a symlink out of the folder, or not a regular file."""
    resolved = os.path.realpath(path)
    if os.path.commonpath([real_root, resolved]) != real_root:
        return "link_outside_folder"
    reason = file_ignore_reason(resolved)
    return None if reason == "missing" else reason  # a file gone since: its read says so


def file_ignore_reason(path: str | Path) -> str | None:
    """``not_a_regular_file`` (a FIFO, a socket, a device: reading one may never end), ``missing``,
    or None: a regular file, or one whose read will say what is wrong."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else "not_a_regular_file"


# --- s3:// prefix --------------------------------------------------------------------------


def split_s3(url: str, field_name: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise BadRequest(f"{field_name}: an S3 location is s3://bucket/prefix", code="invalid_source")
    return parts.netloc, parts.path.lstrip("/")


def check_bucket(bucket: str, settings: Settings, field_name: str) -> None:
    allowed = settings.s3_allowed_buckets
    if allowed and bucket not in allowed:
        raise InvalidInput(
            f"{field_name}: bucket {bucket!r} is not one this deployment may read (setting IMSIM_S3_ALLOWED_BUCKETS)",
            code="url_refused",
        )


def s3_prefix_items(url: str, settings: Settings, s3: Any = None) -> Iterator[ImportItem]:
    """Every object under the prefix, in key order; the id is the key relative to the prefix, and those
    that are not images to import carry why (``ignored``)."""
    bucket, prefix = split_s3(url, "source")
    check_bucket(bucket, settings, "source")
    s3 = s3 or s3_client()
    from botocore.exceptions import BotoCoreError, ClientError

    position = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                yield listed_item(position, f"s3://{bucket}/{key}", key[len(prefix) :])
                position += 1
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in S3_MISSING_CODES:
            raise InvalidInput(f"source: bucket {bucket!r} does not exist", code="s3_not_found") from exc
        if code in S3_DENIED_CODES:
            raise InvalidInput(f"source: listing s3://{bucket}/{prefix} is denied", code="s3_access_denied") from exc
        raise InvalidInput(f"source: S3 answered {code}", code="url_unreachable") from exc
    except BotoCoreError as exc:
        raise InvalidInput(f"source: S3 cannot be reached ({exc.__class__.__name__})", code="url_unreachable") from exc


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


# --- JSONL manifest ------------------------------------------------------------------------


def read_manifest(location: str, settings: Settings, out: BinaryIO) -> None:
    """The manifest's bytes, written to ``out`` as they arrive: ``s3://`` and ``http(s)://`` under the
    image URLs' fetch rules (``max_manifest_bytes`` in all)."""
    scheme = urlsplit(location).scheme.lower()
    if scheme == "s3":
        check_bucket(split_s3(location, "manifest")[0], settings, "manifest")
    if scheme in ("s3", "http", "https"):
        fetcher = UrlFetcher(settings.replace(max_image_bytes=settings.max_manifest_bytes))
        fetcher.fetch_to(location, "manifest", out.write)
        return
    raise manifest_refused()


def manifest_refused() -> BadRequest:
    """A manifest is fetched as an image URL is: ``s3://`` (an allowed bucket), ``https://`` or ``http://``
    (public addresses, the fetch ports), never a local path through the API."""
    return BadRequest("manifest: give an s3://, https:// or http:// URL of a JSONL file", code="invalid_source")


def manifest_items(lines: BinaryIO) -> Iterator[ImportItem]:
    """One item per non-empty line, read as they come (one line in memory at a time); a line that is
    not a usable JSON object is an item with a problem."""
    for position, raw in enumerate(bounded_lines(lines)):
        if isinstance(raw, int):
            yield too_long(position, raw)
        elif raw.strip():
            yield manifest_item(position, raw)


def manifest_file_items(path: str | Path, allow_files: str | None = None) -> Iterator[ImportItem]:
    """The items of a local manifest file (the CLI's), read a line at a time; a line naming a local
    file is one to read only under ``allow_files`` (``local_file``), in both of the CLI's modes."""
    with open(path, "rb") as lines:
        for item in manifest_items(lines):
            yield local_file(item, allow_files)


def local_file(item: ImportItem, allow_files: str | None) -> ImportItem:
    """A manifest line whose url is a bare path names a file on this machine: it is refused unless
    ``--allow-files DIR`` was given and the file, resolved (``..`` and symlinks followed), is a
    regular file under DIR; a relative path is taken from DIR. The item then holds the resolved path."""
    if item.problem is not None or "://" in item.location:
        return item
    if allow_files is None:
        message = f"url: {item.location} is a local file; a manifest names local files only with --allow-files DIR"
        return refused_file(item, message)
    root = os.path.realpath(allow_files)
    resolved = os.path.realpath(os.path.join(root, item.location))
    if os.path.commonpath([root, resolved]) != root:
        return refused_file(item, f"url: {item.location} is outside the --allow-files folder {root}")
    reason = file_ignore_reason(resolved)
    if reason not in (None, "missing"):
        return refused_file(item, f"url: {item.location} is not a regular file")
    return replace(item, location=resolved)


def refused_file(item: ImportItem, message: str) -> ImportItem:
    return replace(item, problem=problem("url", "url_refused", message))


def bounded_lines(lines: BinaryIO) -> Iterator[bytes | int]:
    """Each line (without its end of line), or, for a line over ``MAX_MANIFEST_LINE_BYTES``, its length:
    such a line is counted as it is read, never held."""
    while True:
        raw = lines.readline(MAX_MANIFEST_LINE_BYTES + 2)
        if not raw:
            return
        if len(raw) > MAX_MANIFEST_LINE_BYTES and not raw.endswith(b"\n"):
            yield len(raw) + rest_of_line(lines)
        else:
            yield raw.rstrip(b"\r\n")


def rest_of_line(lines: BinaryIO) -> int:
    """Reads to the end of the line; how many bytes it held (without its end of line)."""
    length = 0
    while True:
        chunk = lines.readline(LINE_CHUNK_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return length + len(chunk.rstrip(b"\r\n"))
        length += len(chunk)


def bounded_manifest(lines: BinaryIO, out: BinaryIO) -> None:
    """The manifest with each over-long line replaced by its length, before Step Functions reads it:
    a line longer than a batch's input bound would break its batch, not just its own item."""
    for raw in bounded_lines(lines):
        out.write((json.dumps({TOO_LONG_FIELD: raw}).encode() if isinstance(raw, int) else raw) + b"\n")


def too_long(position: int, size: int) -> ImportItem:
    line = f"line {position + 1}"
    message = f"{line}: {size:,} bytes, over a manifest line's {MAX_MANIFEST_LINE_BYTES:,}"
    return ImportItem(position, problem=problem(line, "json_too_large", message))


def manifest_item(position: int, raw: bytes | str) -> ImportItem:
    line = f"line {position + 1}"
    if len(raw) > MAX_MANIFEST_LINE_BYTES:  # refused before it is parsed; a str line's characters count
        return too_long(position, len(raw))
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return ImportItem(position, problem=problem(line, "invalid_json", f"{line}: not valid JSON ({exc})"))
    if not isinstance(entry, dict):
        return ImportItem(position, problem=problem(line, "invalid_json", f"{line}: must be a JSON object"))
    return item_of_entry(position, entry)


def item_of_entry(position: int, entry: dict[str, Any]) -> ImportItem:
    """A manifest entry (``url``, optional ``id`` and ``metadata``) as an item, or an item with a problem."""
    line = f"line {position + 1}"
    size = entry.get(TOO_LONG_FIELD) or len(
        json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    if size > MAX_MANIFEST_LINE_BYTES:
        return too_long(position, size)
    unwritable = unwritable_problem(line, entry)
    if unwritable is not None:  # the item carries neither its url nor its id: no result or answer could hold them
        return ImportItem(position, problem=unwritable)
    unknown = sorted(set(entry) - MANIFEST_FIELDS)
    if unknown:
        return ImportItem(position, problem=problem(unknown[0], "unknown_field", f"{unknown[0]}: unknown field"))
    url, image_id, metadata = entry.get("url"), entry.get("id"), entry.get("metadata", {})
    if not isinstance(url, str) or not url.strip():
        return ImportItem(position, problem=problem("url", "missing_input", f"{line}: url: give the image's URL"))
    if image_id is not None and not isinstance(image_id, str):
        return ImportItem(position, url, problem=problem("id", "invalid_image_id", "id: must be a string"))
    if not isinstance(metadata, dict):
        return ImportItem(
            position, url, image_id, problem=problem("metadata", "invalid_metadata", "metadata: must be a JSON object")
        )
    return ImportItem(position, url.strip(), image_id, metadata)


def unwritable_problem(line: str, entry: dict[str, Any]) -> dict[str, str] | None:
    """The problem of a line holding a string UTF-8 cannot write (a lone surrogate), naming the field."""
    field_name = unwritable_field(entry, "")
    if field_name is None:
        return None
    top = field_name.split("[", 1)[0].split(".", 1)[0]
    field_name = field_name.replace("request body", "the line")
    return problem(top if top in MANIFEST_FIELDS else line, "invalid_value", f"{line}: {field_name}: {LONE_SURROGATE}")


def problem(field_name: str, code: str, message: str) -> dict[str, str]:
    return {"field": field_name, "code": code, "message": message}


def problem_of(error: ApiError, field_name: str) -> dict[str, str]:
    """An error of a single add, in the same words, as an item's problem."""
    return problem(error.message.split(":", 1)[0] if ":" in error.message else field_name, error.code, error.message)
