"""Every AWS call the runtime makes, read from its source, checked against botocore's service models
(the ones in the installed botocore): the operation exists, every parameter it passes is one of the
operation's, the limits the code keeps are the model's, and every error code the code branches on is
one the model declares for the operations that code calls.

moto and the fakes answer what we think AWS does; these models are what AWS publishes.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import botocore.session
import pytest

from runtime.engines import catalog
from runtime.engines.sagemaker_engine import BUSY_CODES as ENDPOINT_BUSY_CODES
from runtime.libraries.aws import s3vectors
from runtime.libraries.aws.faults import BUSY_CODES, CONDITION_FAILED, NOT_FOUND, SERVICE_MODELS

ROOT = Path(__file__).resolve().parents[2]

WRAPPED = {
    # module: (botocore service, the store's wrapper methods, parameters the wrapper adds)
    "runtime/libraries/aws/s3vectors.py": ("s3vectors", ("_call", "_pages"), {"vectorBucketName"}),
    "runtime/libraries/aws/registry.py": ("dynamodb", ("_call",), {"TableName"}),
}
CLIENTS = {
    # module: {the expression a client is reached by: botocore service}
    "runtime/libraries/imports/aws.py": {"self.dynamodb": "dynamodb", "self.sfn": "stepfunctions", "self.s3": "s3"},
    "runtime/libraries/imports/sources.py": {"s3": "s3"},
    "runtime/inputs/fetch.py": {"self._s3_client()": "s3"},
    "runtime/engines/sagemaker_engine.py": {"self._runtime()": "sagemaker-runtime"},
}
COMMON_ERRORS = {"ThrottlingException"}
"""AWS's Common Errors, which every action may answer and JSON-protocol models do not declare per
operation (SageMaker's API reference lists ThrottlingException for InvokeEndpoint)."""


@dataclass(frozen=True)
class AwsCall:
    module: str
    line: int
    service: str
    operation: str
    parameters: frozenset[str]
    """The keyword names passed; None-valued ones included (the wrappers drop those)."""


@cache
def model(service: str):
    return botocore.session.get_session().get_service_model(service)


def operation_of(service: str, method: str) -> str | None:
    """``put_object`` -> ``PutObject``, if the service has it."""
    names = {botocore_name(name): name for name in model(service).operation_names}
    return names.get(method)


def botocore_name(operation: str) -> str:
    from botocore import xform_name

    return xform_name(operation)


def dict_keys_assigned(function: ast.AST, name: str) -> set[str]:
    """Keys of ``name = {...}``, ``name |= {...}`` and ``name["key"] = ...`` inside the function."""
    keys: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
                    keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == name
                    and isinstance(target.slice, ast.Constant)
                ):
                    keys.add(target.slice.value)
    return keys


def calls_in(module: str) -> list[AwsCall]:
    tree = ast.parse((ROOT / module).read_text())
    found = []
    for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for node in ast.walk(function):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            call = wrapped_call(module, function, node) or client_call(module, function, node)
            if call is not None:
                found.append(call)
    return found


def wrapped_call(module: str, function: ast.AST, node: ast.Call) -> AwsCall | None:
    if module not in WRAPPED:
        return None
    service, wrappers, implicit = WRAPPED[module]
    if node.func.attr not in wrappers or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    parameters = {k.arg for k in node.keywords if k.arg and k.arg != "missing_ok"} | implicit
    for argument in node.args[1:]:  # _pages("QueryVectors", arguments)
        if isinstance(argument, ast.Name):
            parameters |= dict_keys_assigned(function, argument.id)
    return AwsCall(module, node.lineno, service, node.args[0].value, frozenset(parameters))


def client_call(module: str, function: ast.AST, node: ast.Call) -> AwsCall | None:
    receivers = CLIENTS.get(module, {})
    receiver = ast.unparse(node.func.value)
    method = node.func.attr
    if method == "paginate" and isinstance(node.func.value, ast.Call):  # X.get_paginator("op").paginate(...)
        inner = node.func.value
        if inner.func.attr == "get_paginator" and ast.unparse(inner.func.value) in receivers:
            receiver, method = ast.unparse(inner.func.value), inner.args[0].value
    if receiver not in receivers:
        return None
    service = receivers[receiver]
    operation = operation_of(service, method)
    if operation is None:
        if method in ("get_paginator", "meta"):
            return None
        return AwsCall(module, node.lineno, service, f"<no operation {method}>", frozenset())
    return AwsCall(module, node.lineno, service, operation, frozenset(k.arg for k in node.keywords if k.arg))


def every_call() -> list[AwsCall]:
    return [call for module in [*WRAPPED, *CLIENTS] for call in calls_in(module)]


CALLS = every_call()


def test_the_scan_finds_the_calls_the_runtime_makes():
    """If the code changes how it calls AWS, the scan must follow, not go quiet."""
    called = {(call.service, call.operation) for call in CALLS}
    assert {
        ("s3vectors", "CreateIndex"),
        ("s3vectors", "UpdateIndexMode"),
        ("s3vectors", "QueryVectors"),
        ("dynamodb", "UpdateItem"),
        ("stepfunctions", "StartExecution"),
        ("s3", "ListObjectsV2"),
        ("s3", "GetObject"),
        ("sagemaker-runtime", "InvokeEndpoint"),
    } <= called
    assert len(CALLS) >= 30


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{Path(c.module).stem}:{c.line}:{c.operation}")
def test_every_call_is_an_operation_of_the_service_with_its_parameters(call):
    service_model = model(call.service)
    assert call.operation in service_model.operation_names, f"{call.module}:{call.line}: {call.operation}"
    members = service_model.operation_model(call.operation).input_shape.members
    unknown = call.parameters - set(members)
    assert not unknown, f"{call.module}:{call.line}: {call.operation} has no parameter {sorted(unknown)}"


def test_the_store_keeps_the_services_limits():
    vectors = model("s3vectors")

    def limit(operation: str, member: str, bound: str = "max") -> int:
        return vectors.operation_model(operation).input_shape.members[member].metadata[bound]

    assert s3vectors.MAX_PER_WRITE == limit("PutVectors", "vectors") == limit("DeleteVectors", "keys")
    assert s3vectors.MAX_PER_GET == limit("GetVectors", "keys")
    # The model states topK's minimum only; 100 is the service's documented maximum.
    assert limit("QueryVectors", "topK", "min") == 1 and "max" not in (
        vectors.operation_model("QueryVectors").input_shape.members["topK"].metadata
    )
    assert max(row.dimension for row in catalog.catalog()) <= limit("CreateIndex", "dimension")
    longest_index = len("lib-" + "0" * 32 + s3vectors.FILES_SUFFIX)
    assert longest_index <= limit("CreateIndex", "indexName")
    modes = vectors.operation_model("UpdateIndexMode").input_shape.members["indexMode"].enum
    assert s3vectors.INDEX_MODE in modes


def declared(service: str, operation: str) -> set[str]:
    return {shape.name for shape in model(service).operation_model(operation).error_shapes}


def test_every_busy_code_is_declared_by_every_operation_the_store_calls():
    for name, service in SERVICE_MODELS.items():
        operations = {call.operation for call in CALLS if call.service == service and call.module in WRAPPED}
        assert operations, service
        for operation in operations:
            missing = BUSY_CODES[name] - declared(service, operation)
            assert not missing, f"{service} {operation} declares no {sorted(missing)}"


def test_s3_vectors_throttles_with_its_own_code():
    """What the store used to wait for: s3vectors declares no ThrottlingException anywhere."""
    every_error = {shape.name for shape in model("s3vectors").error_shapes}
    assert "ThrottlingException" not in every_error and "TooManyRequestsException" in every_error


def test_the_codes_the_store_branches_on_are_declared_where_it_branches():
    assert NOT_FOUND in declared("s3vectors", "DeleteIndex")
    for operation in ("PutItem", "UpdateItem", "DeleteItem"):
        assert CONDITION_FAILED in declared("dynamodb", operation)


def test_the_endpoint_busy_codes_are_declared_or_common_errors():
    for code in ENDPOINT_BUSY_CODES:
        assert code in declared("sagemaker-runtime", "InvokeEndpoint") | COMMON_ERRORS, code
