"""Image libraries: named collections of image vectors, searched by image or text.

``open_store`` picks the store named by ``settings.store``: ``local`` (embedded, in ``data_dir``),
``s3vectors`` (Amazon S3 Vectors + a DynamoDB registry) or ``off`` (no store; the library routes
answer 404 ``libraries_disabled``).
"""

from __future__ import annotations

from typing import Any

from runtime.libraries.store import LibraryStore
from runtime.settings import Settings

STORES = ("local", "s3vectors", "off")


def open_store(settings: Settings, dimension: int) -> LibraryStore[Any] | None:
    if settings.store == "local":
        from runtime.libraries.local import LocalStore

        return LocalStore(settings, dimension)
    if settings.store == "s3vectors":
        from runtime.libraries.aws.s3vectors import S3VectorsStore

        return S3VectorsStore(settings, dimension)
    if settings.store == "off":
        return None
    raise ValueError(f"store must be one of {', '.join(STORES)}, not {settings.store!r}")
