"""Image files on this machine's disk: only the CLI's folder import reads them, never a request."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import InvalidInput


def read_file(path: str, field: str, max_bytes: int) -> bytes:
    """The file's bytes, refused (before reading them all) when larger than ``max_bytes``."""
    try:
        with open(Path(path), "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInput(f"{field}: {path} cannot be read ({exc.strerror})", code="file_unreadable") from exc
    if len(data) > max_bytes:
        raise InvalidInput(f"{field}: the image is larger than {max_bytes} bytes", code="image_too_large")
    return data
