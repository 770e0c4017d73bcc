"""The library registry of the AWS store: one DynamoDB item per library, and leases for writers.

Item (partition key ``name``, type S): ``name``, ``index_name`` (the S3 Vectors index), ``model_version``,
``create_time``, ``image_count``, and while a writer holds it, ``lease_owner`` and ``lease_until``.
The item named ``#registry`` (``#`` is never in a library name) is the lease that serialises creating
libraries, so the library quota holds across concurrent functions.

A lease is a conditional write (taken only if nobody holds it or the holder's time is up): several
Lambda instances may add to one library at once, and the dedup check and the insert it allows must
not interleave. A holder that crashes blocks the library for at most ``lease_s`` seconds.

Calls: GetItem, PutItem, UpdateItem, DeleteItem, Scan (and nothing else).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.errors import Overloaded
from runtime.libraries.aws.faults import CONDITION_FAILED, DYNAMODB, error_code, upstream
from runtime.libraries.store import Library, library_not_found

log = logging.getLogger("runtime.libraries")

REGISTRY_KEY = "#registry"
NAMES = {"#name": "name"}


@dataclass
class Lease:
    key: str
    owner: str
    item: dict[str, Any]
    count_delta: int = 0
    """Added to the library's ``image_count`` when the lease is released."""
    deleted: bool = False


class Registry:
    def __init__(
        self,
        client: Any,
        table: str,
        *,
        lease_s: float,
        wait_s: float,
        page_size: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.table = table
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.page_size = page_size
        """Scan page size (None: DynamoDB's 1 MB pages); tests make it small to exercise paging."""
        self.clock = clock

    # --- items -------------------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any] | None:
        answer = self._call("GetItem", Key=_key(name), ConsistentRead=True)
        return from_item(answer["Item"]) if "Item" in answer else None

    def put_new(self, item: dict[str, Any]) -> bool:
        """Write a library item unless one of that name exists; False if it does."""
        try:
            self._call(
                "PutItem",
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(#name)",
                ExpressionAttributeNames=NAMES,
            )
        except ConditionFailedError:
            return False
        return True

    def libraries(self) -> list[dict[str, Any]]:
        """Every library item, following Scan's pages."""
        items: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {"ConsistentRead": True}
        if self.page_size:
            arguments["Limit"] = self.page_size
        while True:
            answer = self._call("Scan", **arguments)
            items.extend(from_item(raw) for raw in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return [item for item in items if not item["name"].startswith("#")]

    # --- leases ------------------------------------------------------------------------
    @contextmanager
    def lease(self, name: str) -> Iterator[Lease]:
        """Hold ``name`` (a library, or REGISTRY_KEY) for the block; 404 if the library is gone."""
        lease = self._acquire(name)
        try:
            yield lease
        finally:
            if not lease.deleted:
                self._release(lease)

    def delete_held(self, lease: Lease) -> None:
        """Delete the library item while holding its lease."""
        self._call(
            "DeleteItem",
            Key=_key(lease.key),
            ConditionExpression="lease_owner = :me",
            ExpressionAttributeValues={":me": {"S": lease.owner}},
        )
        lease.deleted = True

    def mark(self, name: str, key: str, value: str) -> None:
        """Set one attribute of a library item without its lease (a fact about the library that every
        writer would set the same); nothing if the library is gone."""
        try:
            self._call(
                "UpdateItem",
                Key=_key(name),
                UpdateExpression="SET #key = :value",
                ConditionExpression="attribute_exists(#name)",
                ExpressionAttributeNames={"#key": key, **NAMES},
                ExpressionAttributeValues={":value": {"S": value}},
            )
        except ConditionFailedError:
            pass

    def set_held(self, lease: Lease, key: str, value: str) -> None:
        """Set one attribute of the library item while holding its lease."""
        self._call(
            "UpdateItem",
            Key=_key(lease.key),
            UpdateExpression="SET #key = :value",
            ConditionExpression="lease_owner = :me",
            ExpressionAttributeNames={"#key": key},
            ExpressionAttributeValues={":value": {"S": value}, ":me": {"S": lease.owner}},
        )
        lease.item[key] = value

    def _acquire(self, name: str) -> Lease:
        owner = uuid.uuid4().hex
        free = "(attribute_not_exists(lease_until) OR lease_until < :now)"
        condition = free if name == REGISTRY_KEY else f"attribute_exists(#name) AND {free}"
        deadline = time.monotonic() + self.wait_s
        pause = 0.02
        while True:
            now = self.clock()
            try:
                answer = self._call(
                    "UpdateItem",
                    Key=_key(name),
                    UpdateExpression="SET lease_owner = :me, lease_until = :until",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#name": "name"} if name != REGISTRY_KEY else None,
                    ExpressionAttributeValues={
                        ":me": {"S": owner},
                        ":until": {"N": repr(now + self.lease_s)},
                        ":now": {"N": repr(now)},
                    },
                    ReturnValues="ALL_NEW",
                )
                return Lease(name, owner, from_item(answer["Attributes"]))
            except ConditionFailedError:
                if name != REGISTRY_KEY and self.get(name) is None:
                    raise library_not_found(name) from None
            if time.monotonic() > deadline:
                raise Overloaded(f"library {name!r} is busy with other writes; try again", code="library_busy")
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.5)

    def _release(self, lease: Lease) -> None:
        values: dict[str, Any] = {":me": {"S": lease.owner}}
        update = "REMOVE lease_owner, lease_until"
        if lease.count_delta:
            update = "SET image_count = image_count + :delta " + update
            values[":delta"] = {"N": str(lease.count_delta)}
        try:
            self._call(
                "UpdateItem",
                Key=_key(lease.key),
                UpdateExpression=update,
                ConditionExpression="lease_owner = :me",
                ExpressionAttributeValues=values,
            )
        except ConditionFailedError:
            # Our time ran out and someone else holds it now: still count what we wrote.
            log.warning("lease on %r expired before release", lease.key)
            if lease.count_delta:
                self._call(
                    "UpdateItem",
                    Key=_key(lease.key),
                    UpdateExpression="SET image_count = image_count + :delta",
                    ConditionExpression="attribute_exists(#name)",
                    ExpressionAttributeNames=NAMES,
                    ExpressionAttributeValues={":delta": {"N": str(lease.count_delta)}},
                )

    def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        arguments = {key: value for key, value in arguments.items() if value is not None}
        method = getattr(self.client, method_name(operation))
        try:
            answer: dict[str, Any] = method(TableName=self.table, **arguments)
            return answer
        except ClientError as exc:
            if error_code(exc) == CONDITION_FAILED:
                raise ConditionFailedError() from exc
            raise upstream(DYNAMODB, operation, exc) from exc
        except BotoCoreError as exc:
            raise upstream(DYNAMODB, operation, exc) from exc


class ConditionFailedError(Exception):
    """A conditional write found the item in another state."""


def library_of(item: dict[str, Any]) -> Library:
    return Library(
        item["name"],
        item["model_version"],
        float(item["create_time"]),
        int(item["image_count"]),
        bool(int(item.get("thumbnails", 0))),  # stored as a number: the registry's items hold no booleans
        float(item["threshold"]) if "threshold" in item else None,
    )


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"N": repr(value)} if isinstance(value, (int, float)) else {"S": value} for key, value in values.items()
    }


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, typed in item.items():
        if "N" in typed:
            number = float(typed["N"])
            values[key] = int(number) if number.is_integer() and "." not in typed["N"] else number
        else:
            values[key] = typed.get("S")
    return values


def _key(name: str) -> dict[str, Any]:
    return {"name": {"S": name}}


def method_name(operation: str) -> str:
    """``PutVectors`` -> ``put_vectors`` (boto3's method for an API action)."""
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in operation).lstrip("_")
