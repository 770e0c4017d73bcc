"""The bulk-import nested stack in the synthesized templates: the state machine (Distributed Map over an
S3 prefix or a JSONL manifest), its parameters, the worker function and IAM. cdk-nag and cfn-lint run on
these templates in test_templates.py."""

from __future__ import annotations

import json

import pytest

from tests.infra.test_templates import _as_list, _only, store_actions, synthesize


@pytest.fixture(scope="module", params=["lambda", "sagemaker"])
def synth(request, tmp_path_factory):
    flags = {"backend": request.param}
    if request.param == "sagemaker":
        flags["s3_read_buckets"] = "catalog-in"
    return synthesize(flags, tmp_path_factory.mktemp("imports"))


def definition(synth) -> dict:
    machine = _only(synth.template("Imports"), "AWS::StepFunctions::StateMachine")
    return json.loads(machine["DefinitionString"])


def test_imports_exist_only_with_the_api_and_the_libraries(synth):
    assert synth.root["Conditions"]["ImportsOn"] == {
        "Fn::And": [{"Condition": "ImageSimilarityOn"}, {"Condition": "LibrariesOn"}]
    }
    assert synth.nested_conditions()["Imports"] == "ImportsOn"
    backend = synth.nested_parameters("Backend")
    for name in ("ImportStateMachineArn", "ImportTableName", "ImportResultsBucket", "ImportPolicyArn"):
        assert backend[name]["Fn::If"][0] == "ImportsOn", name
    environment = _only(synth.template("Backend"), "AWS::Lambda::Function")["Environment"]["Variables"]
    assert environment["IMSIM_IMPORT_STATE_MACHINE"] == {"Ref": "ImportStateMachineArn"}


def test_max_concurrency_is_a_parameter(synth):
    parameter = synth.root["Parameters"]["ImportMaxConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (
        "Number",
        8,
        1,
        40,
    )
    assert synth.nested_parameters("Imports")["MaxConcurrency"] == {"Ref": "ImportMaxConcurrency"}
    machine = _only(synth.template("Imports"), "AWS::StepFunctions::StateMachine")
    assert machine["DefinitionSubstitutions"]["MaxConcurrency"] == {"Ref": "MaxConcurrency"}
    settings = definition(synth)["States"]["Settings"]["Parameters"]
    assert settings["max_concurrency.$"] == "States.StringToJson('${MaxConcurrency}')"  # a number for the maps


def test_two_distributed_maps_read_batch_tolerate_and_write_results(synth):
    states = definition(synth)["States"]
    assert states["Source"]["Choices"] == [
        {"Variable": "$.job.kind", "StringEquals": "manifest", "Next": "ImportManifest"}
    ]
    prefix, manifest = states["ImportPrefix"], states["ImportManifest"]
    assert prefix["ItemReader"]["Resource"] == "arn:${Partition}:states:::s3:listObjectsV2"
    assert prefix["ItemReader"]["Parameters"] == {"Bucket.$": "$.job.bucket", "Prefix.$": "$.job.prefix"}
    assert manifest["ItemReader"]["Resource"] == "arn:${Partition}:states:::s3:getObject"
    assert manifest["ItemReader"]["ReaderConfig"] == {"InputType": "JSONL"}
    for one in (prefix, manifest):
        assert one["ItemBatcher"]["MaxItemsPerBatch"] == 32
        assert {"import_id.$", "library.$", "dedup.$", "threshold.$"} <= set(one["ItemBatcher"]["BatchInput"])
        assert one["MaxConcurrencyPath"] == "$.max_concurrency"
        assert one["ToleratedFailurePercentage"] == 5
        # The execution's name is the import id: the prefix the API reads results from (imports/<id>/).
        assert one["ResultWriter"]["Parameters"] == {
            "Bucket": "${ResultsBucket}",
            "Prefix.$": "States.Format('imports/{}', $$.Execution.Name)",
        }
        assert one["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
        (task,) = one["ItemProcessor"]["States"].values()
        assert task["Resource"] == "${WorkerArn}"
        retry = task["Retry"][0]
        assert "StoreBusy" in retry["ErrorEquals"] and "ImportStopped" not in retry["ErrorEquals"]
        assert retry["BackoffRate"] == 2 and retry["JitterStrategy"] == "FULL"
    assert prefix["ItemBatcher"]["BatchInput"]["prefix.$"] == "$.job.prefix"


def test_the_worker_is_the_backends_image_with_the_import_handler(synth):
    imports = synth.template("Imports")
    worker = _only(imports, "AWS::Lambda::Function")
    assert worker["ImageConfig"] == {"Command": ["import_handler.handler"]}
    environment = worker["Environment"]["Variables"]
    assert environment["IMSIM_STORE"] == "s3vectors" and environment["IMSIM_IMPORT_BATCH"] == "32"
    assert environment["IMSIM_VECTOR_BUCKET"] == {"Ref": "VectorBucketName"}
    tag = worker["Code"]["ImageUri"]["Fn::Join"][1][-1].lstrip(":")
    if synth.flags["backend"] == "lambda":
        assert tag == synth.docker_images()["model"]["tag"] and environment["IMSIM_ENGINE"] == "onnx"
    else:
        assert tag == synth.docker_images()["front"]["tag"]
        assert environment["IMSIM_ENGINE"] == "sagemaker"
        assert environment["IMSIM_SAGEMAKER_ENDPOINT"] == {"Ref": "EndpointName"}
        assert environment["IMSIM_S3_ALLOWED_BUCKETS"] == "catalog-in"
    assert worker["LoggingConfig"]["LogGroup"] == {"Ref": "LogGroupName"}


def statements_of(synth, role_prefix: str) -> list[dict]:
    resources = synth.nested["Imports"]["Resources"]
    found = []
    for body in resources.values():
        if body["Type"] == "AWS::IAM::Policy" and any(
            r["Ref"].startswith(role_prefix) for r in body["Properties"]["Roles"]
        ):
            found += body["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_iam_is_scoped_to_the_stack_and_the_listed_buckets(synth):
    statements = statements_of(synth, "WorkerRole")
    # Active X-Ray tracing's statement (every function has it) names no resource and has no Sid.
    unnamed = [s["Action"] for s in statements if "Sid" not in s]
    assert unnamed == [["xray:PutTelemetryRecords", "xray:PutTraceSegments"]]
    worker = {s["Sid"]: s for s in statements if "Sid" in s}
    assert sorted(worker["LibraryVectors"]["Action"]) == store_actions("s3vectors", "s3vectors.py")
    assert worker["CountJobs"]["Action"] == "dynamodb:UpdateItem"
    assert worker["CountJobs"]["Resource"]["Fn::GetAtt"][0].startswith("JobTable")

    machine = {s["Sid"]: s for s in statements_of(synth, "StateMachineRole")}
    assert machine["InvokeWorker"]["Action"] == "lambda:InvokeFunction"
    assert machine["InvokeWorker"]["Resource"]["Fn::GetAtt"][0].startswith("WorkerFunction")
    wildcards = sorted(sid for sid, s in machine.items() if "*" in _as_list(s["Resource"]))
    assert wildcards == ["StateMachineLogDelivery", "StateMachineTracing"]
    listed = synth.flags.get("s3_read_buckets")
    reads = [s for s in [*machine.values(), *worker.values()] if s["Sid"] in ("ReadListedBuckets", "ListListedBuckets")]
    if listed:
        assert {s["Sid"] for s in reads} == {"ReadListedBuckets", "ListListedBuckets"}
        assert all(listed in json.dumps(s["Resource"]) for s in reads)
    else:
        assert reads == []

    api = _only(synth.template("Imports"), "AWS::IAM::ManagedPolicy")["PolicyDocument"]["Statement"]
    assert {s["Sid"]: sorted(_as_list(s["Action"])) for s in api} == {
        "StartImports": ["states:StartExecution"],
        "FollowImports": ["states:DescribeExecution", "states:StopExecution"],
        "ImportRecords": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
        "ImportResults": ["s3:GetObject", "s3:PutObject"],
        "ListImportResults": ["s3:ListBucket"],
    }
    backend_role = next(
        body
        for name, body in synth.nested["Backend"]["Resources"].items()
        if body["Type"] == "AWS::IAM::Role" and name.startswith("ApiFunctionRole")
    )
    assert backend_role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::If": ["HasLibraries", {"Ref": "ImportPolicyArn"}, {"Ref": "AWS::NoValue"}]}
    ]


def test_results_bucket_and_job_table(synth):
    imports = synth.template("Imports")
    assert imports.find_resources("AWS::S3::Bucket") == {}  # the storage stack's: it outlives a flip of the imports
    source, attribute = synth.nested_parameters("Imports")["ResultsBucketName"]["Fn::GetAtt"]
    assert source.startswith("LibraryStorageNestedStack") and "ImportResults" in attribute
    storage = synth.template("LibraryStorage")
    bucket = _only(storage, "AWS::S3::Bucket")
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30
    assert bucket["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    policy = json.dumps(_only(storage, "AWS::S3::BucketPolicy"))
    assert '"aws:SecureTransport": "false"' in policy
    table = _only(imports, "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [{"AttributeName": "import_id", "KeyType": "HASH"}]
