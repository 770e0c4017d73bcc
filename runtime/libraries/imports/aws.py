"""Imports on AWS: the API's POST starts a Step Functions execution; GET reads the job record.

- ``JobTable``: one DynamoDB item per import (partition key ``import_id``): what was asked, the
  execution, and the counts, which each worker batch adds to atomically (UpdateItem ADD).
- ``StepFunctionsImports``: the API side. POST checks the request (library, allow list), writes
  the record and calls StartExecution (the execution is named by the import id). GET reads the
  record and, while it says running, DescribeExecution for the end. DELETE calls StopExecution.
  An https:// manifest is fetched once under the image URLs' rules and put in the results bucket,
  since the state machine's JSONL ItemReader reads from S3.
- The per-item results: the state machine's ResultWriter writes each batch's answer under
  ``s3://<results bucket>/imports/<import_id>/``; GET shows the first failures from there once the
  execution has ended.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from runtime.errors import InvalidInput
from runtime.libraries.imports.counts import COUNTS
from runtime.libraries.imports.jobs import ImportJob, check_import_id, counts_of_record, new_import_id, not_found
from runtime.libraries.imports.runner import check_source, page_start
from runtime.libraries.imports.sources import bounded_manifest, read_manifest, split_s3
from runtime.libraries.store import LibraryStore, encode_token
from runtime.libraries.values import check_score
from runtime.settings import Settings

EXECUTION_STATUS = {"RUNNING": "running", "SUCCEEDED": "succeeded", "ABORTED": "cancelled"}
"""Anything else (FAILED, TIMED_OUT) is ``failed``."""
RESULTS_PREFIX = "imports"


class JobTable:
    def __init__(self, table: str, dynamodb: Any):
        self.table = table
        self.dynamodb = dynamodb

    def put(self, job: ImportJob, execution_arn: str) -> None:
        record = {
            "import_id": job.import_id,
            "library": job.library,
            "source": json.dumps(job.source),
            "dedup": job.dedup,
            "threshold": json.dumps(job.threshold),
            "status": job.status,
            "start_time": Decimal(str(job.start_time)),
            "results": job.results,
            "execution_arn": execution_arn,
            **{name: 0 for name in COUNTS},
        }
        self.dynamodb.put_item(TableName=self.table, Item=to_item(record))

    def get(self, library: str, import_id: str) -> tuple[ImportJob, str]:
        """The job and its execution's ARN."""
        key = {"import_id": {"S": check_import_id(library, import_id)}}
        found = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        if "Item" not in found or found["Item"]["library"]["S"] != library:
            raise not_found(library, import_id)
        return job_of(from_item(found["Item"]))

    def list_jobs(self, library: str) -> list[ImportJob]:
        jobs: list[ImportJob] = []
        arguments: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(
                **arguments,
                FilterExpression="#library = :library",
                ExpressionAttributeNames={"#library": "library"},
                ExpressionAttributeValues={":library": {"S": library}},
            )
            jobs.extend(job_of(from_item(item))[0] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(jobs, key=lambda job: job.start_time)
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def add_counts(self, import_id: str, result: dict[str, Any]) -> None:
        names = {f"#{name}": name for name in COUNTS}
        values = {f":{name}": {"N": str(int(result.get(name, 0)))} for name in COUNTS}
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"import_id": {"S": import_id}},
            UpdateExpression="ADD " + ", ".join(f"#{name} :{name}" for name in COUNTS),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def finish(self, import_id: str, status: str, end_time: float, total: int | None) -> None:
        values = {":status": {"S": status}, ":end": {"N": str(end_time)}, ":running": {"S": "running"}}
        names = {"#status": "status", "#end": "end_time"}
        expression = "SET #status = :status, #end = :end"
        if total is not None:
            expression += ", #total = :total"
            values[":total"] = {"N": str(total)}
            names["#total"] = "total"
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"import_id": {"S": import_id}},
            UpdateExpression=expression,
            ConditionExpression="#status = :running",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


class StepFunctionsImports:
    def __init__(self, settings: Settings, store: LibraryStore[Any], *, clients: dict[str, Any] | None = None):
        import boto3

        clients = clients or {}
        self.settings = settings
        self.store = store
        self.machine = settings.import_state_machine
        self.bucket = settings.import_results_bucket
        if not settings.import_table or not self.bucket:
            raise ValueError("imports on AWS need IMSIM_IMPORT_TABLE and IMSIM_IMPORT_RESULTS_BUCKET")
        self.sfn = clients.get("stepfunctions") or boto3.client("stepfunctions")
        self.s3 = clients.get("s3") or boto3.client("s3")
        self.jobs = JobTable(settings.import_table, clients.get("dynamodb") or boto3.client("dynamodb"))

    def start(self, library: str, source: dict[str, str], *, dedup: bool, threshold: float | None) -> ImportJob:
        check_source(source, self.settings)
        location = next(iter(source.values()), "")
        if location.lower().startswith("s3://") and not self.settings.s3_allowed_buckets:
            raise InvalidInput(
                f"{next(iter(source))}: this deployment may read no S3 bucket; list yours in the "
                "s3_read_buckets flag and deploy again",
                code="url_refused",
            )
        check_score(threshold, "threshold")
        self.store.get_library(library)
        import_id = new_import_id()
        results = f"s3://{self.bucket}/{RESULTS_PREFIX}/{import_id}/"
        job = ImportJob(import_id, library, source, dedup=dedup, threshold=threshold, results=results)
        execution_input = {"import_id": import_id, "library": library, "dedup": dedup, "threshold": threshold}
        if "source" in source:
            bucket, prefix = split_s3(source["source"], "source")
            execution_input |= {"kind": "prefix", "bucket": bucket, "prefix": prefix}
        else:
            bucket, key = self._manifest_in_s3(import_id, source["manifest"])
            execution_input |= {"kind": "manifest", "bucket": bucket, "key": key}
        started = self.sfn.start_execution(
            stateMachineArn=self.machine, name=import_id, input=json.dumps(execution_input)
        )
        self.jobs.put(job, started["executionArn"])
        return job

    def _manifest_in_s3(self, import_id: str, manifest: str) -> tuple[str, str]:
        if manifest.lower().startswith("s3://"):
            return split_s3(manifest, "manifest")
        key = f"{RESULTS_PREFIX}/{import_id}/manifest.jsonl"
        assert self.bucket is not None, "an https manifest is copied into the results bucket"
        with tempfile.TemporaryFile() as fetched, tempfile.TemporaryFile() as bounded:
            read_manifest(manifest, self.settings, fetched)
            fetched.seek(0)
            bounded_manifest(fetched, bounded)
            bounded.seek(0)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=bounded)
        return self.bucket, key

    def get(self, library: str, import_id: str) -> ImportJob:
        job, execution_arn = self.jobs.get(library, import_id)
        if job.finished:
            return job
        execution = self.sfn.describe_execution(executionArn=execution_arn)
        status = EXECUTION_STATUS.get(execution["status"], "failed")
        if status == "running":
            return job
        end = execution.get("stopDate")
        end_time = end.timestamp() if end is not None else time.time()
        try:
            self.jobs.finish(import_id, status, end_time, job.counts["processed"])
        except self.jobs.dynamodb.exceptions.ConditionalCheckFailedException:
            pass  # another call recorded the end first
        error = (execution.get("cause") or execution.get("error")) if status == "failed" else None
        return replace(job, status=status, end_time=end_time, total=job.counts["processed"], error=error)

    def list_jobs(self, library: str) -> list[ImportJob]:
        return [self.get(library, job.import_id) if not job.finished else job for job in self.jobs.list_jobs(library)]

    def cancel(self, library: str, import_id: str) -> ImportJob:
        from runtime.errors import Conflict

        job, execution_arn = self.jobs.get(library, import_id)
        if job.finished:
            raise Conflict(f"import {import_id!r} has already {job.status}", code="import_finished")
        self.sfn.stop_execution(executionArn=execution_arn, cause="cancelled through the API")
        return self.get(library, import_id)

    def failures(self, job: ImportJob, limit: int) -> list[dict[str, Any]]:
        """The first failed items, from the batches' answers the ResultWriter wrote (once the run ended)."""
        if not job.finished:
            return []
        found: list[dict[str, Any]] = []
        prefix = f"{RESULTS_PREFIX}/{job.import_id}/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].rsplit("/", 1)[-1].startswith("SUCCEEDED"):
                    continue
                for child in json.loads(self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()):
                    found.extend(json.loads(child.get("Output") or "{}").get("failures", []))
                    if len(found) >= limit:
                        return found[:limit]
        return found

    def failures_page(
        self, job: ImportJob, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The ResultWriter's files hold a batch's failures together: a page skips the ones before it."""
        after = page_start(next_token)
        found = self.failures(job, after + limit)[after:]
        more = len(found) == limit or not job.finished
        return found, encode_token({"after": after + len(found)}) if more else None

    def forget_library(self, library: str) -> None:
        """Running executions stop (their batches would stop on the missing library anyway); the job
        records stay until they are deleted with the table, and the results expire after 30 days."""
        for job in self.jobs.list_jobs(library):
            if not job.finished:
                self.cancel(library, job.import_id)


def job_of(record: dict[str, Any]) -> tuple[ImportJob, str]:
    job = ImportJob(
        record["import_id"],
        record["library"],
        json.loads(record["source"]),
        dedup=record["dedup"],
        threshold=json.loads(record["threshold"]),
        status=record["status"],
        total=int(record["total"]) if "total" in record else None,
        counts=counts_of_record(record),
        start_time=float(record["start_time"]),
        end_time=float(record["end_time"]) if "end_time" in record else None,
        results=record.get("results"),
    )
    return job, record["execution_arn"]


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in record.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}
