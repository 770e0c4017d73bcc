"""``order_by``: a listing ordered by a top-level metadata value, paged by a keyset token.

The order, the same on both stores (``LibraryStore.list_images`` sorts what ``_every_image`` reads):

- Numbers by value (``1`` and ``1.0`` tie); strings that are ISO 8601 dates or date-times
  (``2024-05-01``, ``2024-05-01T08:30:00Z``, ``2024-05-01T10:30:00+02:00``) by the instant they name (a
  date is its midnight, a time without offset is UTC), so two offsets or a date beside a date-time order
  as time does; other strings by code point. A key holding several kinds orders numbers, then dates,
  then other strings (reversed with ``desc``).
- Images without the key, or whose value is none of those (a boolean, a list, an object, null), come
  last in both directions.
- Ties, and the images without the key, by id (ascending in both directions).

A page token carries the order it was made for and the last image served (its id and value): the next
page starts after that position, so an image added or deleted between pages makes the listing neither
repeat nor skip another (an image whose value changes between pages moves with it).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runtime.errors import BadRequest
from runtime.libraries.metadata import MAX_METADATA_KEY_CHARS, RESERVED_METADATA_KEY, is_metadata_key, is_number

ORDERS = ("asc", "desc")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?")
NUMBER, DATE, TEXT = 0, 1, 2
"""The kinds of orderable values, in ascending order."""
SortKey = tuple[Any, ...]


@dataclass(frozen=True)
class Order:
    key: str
    """The metadata key ordered by."""
    descending: bool = False


def check_order(order_by: str | None, order: str | None) -> Order | None:
    """The order asked for (None: the store's id order), or a 400 naming ``order_by`` or ``order``."""
    if order is not None and order not in ORDERS:
        raise BadRequest(f"order: {order!r}; use asc or desc", code="invalid_value")
    if order_by is None:
        if order is not None:
            raise BadRequest("order: give order_by too (the metadata key to order by)", code="invalid_value")
        return None
    if not is_metadata_key(order_by):
        raise BadRequest(
            f"order_by: {order_by!r} is not a metadata key (1 to {MAX_METADATA_KEY_CHARS} characters, not "
            f"starting with '$', not {RESERVED_METADATA_KEY!r})",
            code="invalid_value",
        )
    return Order(order_by, order == "desc")


def sort_key(order: Order, image_id: str, metadata: dict[str, Any]) -> SortKey:
    """Where an image goes in the order: compare keys to compare positions."""
    value = orderable(metadata.get(order.key))
    if value is None:
        return (1, 0, 0, image_id)
    kind, sortable = value
    if not order.descending:
        return (0, kind, sortable, image_id)
    if kind == TEXT:
        # A string reversed: each code point negated, and a terminator above every negated one, so that
        # "abc" comes before its prefix "ab" as descending order wants.
        return (0, -kind, (*(-ord(char) for char in sortable), 1), image_id)
    return (0, -kind, -sortable, image_id)


def orderable(value: Any) -> tuple[int, Any] | None:
    """A value's kind and what it sorts by; None for a value that is not ordered (sorted last)."""
    if is_number(value):
        return NUMBER, value
    if not isinstance(value, str):
        return None
    instant = iso_instant(value)
    return (DATE, instant) if instant is not None else (TEXT, value)


def iso_instant(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 date or date-time (UTC when it gives no offset)."""
    if not ISO_DATE.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # 2024-02-30, 25:00
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def page_after(keys: list[SortKey], token: dict[str, Any] | None, order: Order) -> int:
    """The position in the sorted ``keys`` where the page after ``token`` starts."""
    if token is None:
        return 0
    last = token.get("id")
    if token.get("order_by") != order.key or token.get("desc") != order.descending or not isinstance(last, str):
        raise BadRequest(
            "next_token: not a token of this order (give the order_by and order it was made with)",
            code="invalid_next_token",
        )
    metadata = {order.key: token["value"]} if "value" in token else {}
    return bisect.bisect_right(keys, sort_key(order, last, metadata))


def token_of(order: Order, image_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The position after an image, as ``page_after`` reads it."""
    position: dict[str, Any] = {"order_by": order.key, "desc": order.descending, "id": image_id}
    if orderable(metadata.get(order.key)) is not None:
        position["value"] = metadata[order.key]
    return position
