"""Every parameter combination, resolved: what CloudFormation makes for each one, and what an update
from one to another changes, on both backends.

Each backend is synthesized once (the templates do not depend on the parameter values); the
combinations are evaluated in Python by ``tests/infra/cfn_resolver.py``. The expectations come from
the rules below (which stacks a combination has, which routes, which authorization), written
independently of the templates.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from infra.builder import build_app
from infra.openapi import ROUTES
from runtime.settings import Settings
from tests.infra.cfn_resolver import Deployment, Evaluated, SynthesizedApp, TemplateError, runtime_environment

BACKENDS = ("lambda", "sagemaker")
AUTHORIZATIONS = ("AWS_IAM", "API_KEY", "NONE")


@dataclass(frozen=True)
class Combination:
    image_similarity: bool
    libraries: bool
    explorer: bool
    authorization: str
    waf: bool

    def parameters(self) -> dict[str, str]:
        return {
            "ImageSimilarity": _yes(self.image_similarity),
            "Libraries": _yes(self.libraries),
            "ApiExplorer": _yes(self.explorer),
            "ApiAuthorization": self.authorization,
            "Waf": _yes(self.waf),
        }

    def __str__(self) -> str:
        return ",".join(f"{name}={value}" for name, value in self.parameters().items())

    # --- the rules, independent of the templates --------------------------------------------

    def stacks(self) -> set[str]:
        stacks = {"Logs", "Images", "LibraryStorage"}  # the storage stays when Libraries=no: the data does
        if self.image_similarity:
            stacks |= {"Backend", "Api", "Monitoring"}
            if self.explorer:
                stacks.add("Explorer")
            if self.waf:
                stacks.add("Firewall")
            if self.libraries:
                stacks.add("Imports")  # bulk imports need the feature and the libraries
        return stacks

    def routes(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """(path, method) -> (authorization type, API key required); empty without the feature."""
        if not self.image_similarity:
            return {}
        routes = {}
        for route in ROUTES:
            if route.explorer and not self.explorer:
                continue
            for method in route.methods:
                if route.explorer:
                    routes[(route.path, method)] = ("NONE", False)
                else:
                    auth = "AWS_IAM" if self.authorization == "AWS_IAM" else "NONE"
                    routes[(route.path, method)] = (auth, self.authorization == "API_KEY")
            routes[(route.path, "options")] = ("NONE", False)  # CORS preflight, never protected
        return routes


COMBINATIONS = [
    Combination(*values)
    for values in itertools.product((True, False), (True, False), (True, False), AUTHORIZATIONS, (True, False))
]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --- synthesis, once per backend --------------------------------------------------------------


@pytest.fixture(scope="session")
def apps(tmp_path_factory) -> dict[str, SynthesizedApp]:
    apps = {}
    for backend in BACKENDS:
        outdir = tmp_path_factory.mktemp(f"resolver-{backend}")
        build_app({"backend": backend}, nag=False, validation=False, outdir=str(outdir)).synth()
        apps[backend] = SynthesizedApp.load(Path(outdir))
    return apps


@cache
def _deployment(app: SynthesizedApp, combination: Combination) -> Deployment:
    return Deployment(app, combination.parameters())


@pytest.fixture(scope="session")
def deploy(apps):
    def deploy(backend: str, combination: Combination) -> Deployment:
        return _deployment(apps[backend], combination)

    return deploy


# --- what one combination makes ---------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What a deployment serves, read from the resolved templates."""

    stacks: frozenset[str]
    routes: dict[tuple[str, str], tuple[str, bool]]
    deployment: str | None
    """Logical id of the API Gateway deployment the stage serves."""
    resources: frozenset[tuple[str, str]]
    """(stack, logical id) of every resource that exists."""


def served(deployment: Deployment) -> Served:
    routes: dict[tuple[str, str], tuple[str, bool]] = {}
    live = None
    if "Api" in deployment.stacks:
        api = deployment.stack("Api")
        body = api.only("AWS::ApiGateway::RestApi")[1]["Properties"]["Body"]
        for path, item in body["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                keyed = operation.get("security") == [{"api_key": []}]
                assert operation.get("security") in (None, [{"api_key": []}]), (path, method, operation)
                routes[(path, method)] = (operation["x-amazon-apigateway-auth"]["type"], keyed)
        live = _stage_deployment(api)
    resources = frozenset(
        (name, logical_id)
        for name, stack in [("root", deployment.root), *deployment.stacks.items()]
        for logical_id in stack.resources
    )
    return Served(frozenset(deployment.stacks), routes, live, resources)


def _stage_deployment(api: Evaluated) -> str:
    _, stage = api.only("AWS::ApiGateway::Stage")
    reference = stage["Properties"]["DeploymentId"]
    assert set(reference) == {"Ref"}, reference  # the Fn::If chain resolved to exactly one deployment
    assert reference["Ref"] in api.of_type("AWS::ApiGateway::Deployment")
    return reference["Ref"]


@pytest.mark.slow  # the first one synthesizes both backends (~15 s on 2 cores); the others take ms
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("combination", COMBINATIONS, ids=str)
def test_each_combination_makes_what_its_parameters_say(deploy, backend, combination):
    deployment = deploy(backend, combination)
    result = served(deployment)
    assert result.stacks == combination.stacks()
    assert result.routes == combination.routes()
    assert deployment.dangling() == []

    root_outputs = set(deployment.root.outputs)
    assert ("ApiUrl" in root_outputs) == combination.image_similarity
    assert ("ApiExplorerUrl" in root_outputs) == (combination.image_similarity and combination.explorer)
    assert ("ApiKeyId" in root_outputs) == (combination.image_similarity and combination.authorization == "API_KEY")
    assert ("WebAclArn" in root_outputs) == (combination.image_similarity and combination.waf)
    assert ("VectorBucketName" in root_outputs) == combination.libraries
    if not combination.image_similarity:
        return

    api = deployment.stack("Api")
    deployments = api.of_type("AWS::ApiGateway::Deployment")
    assert list(deployments) == [result.deployment]  # one deployment, the one the stage serves
    explorer = "on" if combination.explorer else "off"
    description = deployments[result.deployment]["Properties"]["Description"]
    assert description.startswith(f"authorization {combination.authorization}, explorer {explorer},")

    keyed = combination.authorization == "API_KEY"
    for resource_type in ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"):
        assert len(api.of_type(resource_type)) == (1 if keyed else 0), resource_type
    if keyed:
        plan = api.only("AWS::ApiGateway::UsagePlan")[1]["Properties"]
        assert plan["Throttle"] == {"RateLimit": 5, "BurstLimit": 10}  # the root's parameter defaults
        assert plan["Quota"] == {"Limit": 10000, "Period": "DAY"}
        assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestApi"}, "Stage": {"Ref": "Stage"}}]

    permissions = api.of_type("AWS::Lambda::Permission")
    assert len(permissions) == (2 if combination.explorer else 1)

    function = deployment.stack("Backend").only("AWS::Lambda::Function")[1]["Properties"]
    environment = function["Environment"]["Variables"]
    assert environment["IMSIM_AUTH"] == combination.authorization
    assert environment["IMSIM_STORE"] == ("s3vectors" if combination.libraries else "off")
    assert (environment["IMSIM_VECTOR_BUCKET"] == "") == (not combination.libraries)
    backend_policies = deployment.stack("Backend").of_type("AWS::IAM::Policy")
    assert any("LibraryAccess" in name for name in backend_policies) == combination.libraries
    if combination.explorer:
        explorer_function = deployment.stack("Explorer").only("AWS::Lambda::Function")[1]["Properties"]
        assert explorer_function["Environment"]["Variables"]["IMSIM_AUTH"] == combination.authorization
    # The runtime accepts what each function is given (the values known before deploy time).
    for stack in ("Backend", "Explorer") if combination.explorer else ("Backend",):
        variables = deployment.stack(stack).only("AWS::Lambda::Function")[1]["Properties"]["Environment"]["Variables"]
        Settings.from_env(runtime_environment({k: v for k, v in variables.items() if k.startswith("IMSIM_")}))

    if combination.waf:
        firewall = deployment.stack("Firewall")
        _, association = firewall.only("AWS::WAFv2::WebACLAssociation")
        assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
        text, names = firewall.values["StageArn"]["Fn::Sub"]
        assert text.endswith(":apigateway:${AWS::Region}::/restapis/${RestApi}/stages/${Stage}")
        assert {value["Fn::GetAtt"][0] for value in names.values()} == {deployment.app.logical_id("Api")}
        _, acl = firewall.only("AWS::WAFv2::WebACL")
        rules = {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}
        assert set(rules) == {
            "AWSManagedRulesAmazonIpReputationList",
            "AWSManagedRulesCommonRuleSet",
            "RateLimitPerIp",
        }
        assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["Limit"] == 1000
        common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
        # Bodies carry base64 images: the 8 KB body size rule only counts.
        assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]


# --- what an update from one combination to another changes -------------------------------------


def storage_of(summary: Served) -> frozenset[tuple[str, str]]:
    storage = frozenset(resource for resource in summary.resources if resource[0] == "LibraryStorage")
    names = {logical_id for _, logical_id in storage}
    assert {"VectorBucket", "RegistryTable"} <= names and any(n.startswith("ImportResults") for n in names), names
    return storage


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_update_between_two_combinations(deploy, backend):
    summaries = {combination: served(deploy(backend, combination)) for combination in COMBINATIONS}
    for before, after in itertools.product(COMBINATIONS, repeat=2):
        old, new = summaries[before], summaries[after]
        where = f"{before} -> {after}"
        # Stacks created and deleted.
        assert new.stacks - old.stacks == after.stacks() - before.stacks(), where
        assert old.stacks - new.stacks == before.stacks() - after.stacks(), where
        # Routes added and removed, and authorization switched on the routes that stay.
        expected_old, expected_new = before.routes(), after.routes()
        assert set(new.routes) - set(old.routes) == set(expected_new) - set(expected_old), where
        assert set(old.routes) - set(new.routes) == set(expected_old) - set(expected_new), where
        switched = {key for key in set(old.routes) & set(new.routes) if old.routes[key] != new.routes[key]}
        expected_switched = {
            key for key in set(expected_old) & set(expected_new) if expected_old[key] != expected_new[key]
        }
        assert switched == expected_switched, where
        # Libraries, import results: the same resources whatever the switches, so a flip off and on
        # finds the same libraries again and leaves nothing behind (retained resources are never re-made).
        assert storage_of(old) == storage_of(new) == storage_of(summaries[COMBINATIONS[0]]), where
        if old.deployment and new.deployment:
            # The stage moves to a new deployment (a new snapshot) exactly when what it serves changes:
            # a stale one would keep serving the old routes or authorization.
            assert (old.deployment != new.deployment) == (old.routes != new.routes), where
            # The REST API and its stage are updated in place, never replaced (the URL stays).
            for kept in ("RestApi", "Stage"):
                assert ("Api", kept) in old.resources and ("Api", kept) in new.resources, where


# --- the evaluator itself ---------------------------------------------------------------------

TINY = {
    "Parameters": {
        "Mode": {"Type": "String", "Default": "a", "AllowedValues": ["a", "b"]},
        "Size": {"Type": "Number", "Default": 3},
    },
    "Conditions": {
        "IsA": {"Fn::Equals": [{"Ref": "Mode"}, "a"]},
        "NotA": {"Fn::Not": [{"Condition": "IsA"}]},
        "Both": {"Fn::And": [{"Condition": "IsA"}, {"Fn::Equals": [{"Ref": "Size"}, "3"]}]},
        "Either": {"Fn::Or": [{"Condition": "NotA"}, {"Condition": "Both"}]},
    },
    "Resources": {
        "Always": {
            "Type": "AWS::X::Y",
            "Properties": {
                "Picked": {"Fn::If": ["IsA", "first", {"Fn::If": ["Both", "never", "second"]}]},
                "Dropped": {"Fn::If": ["NotA", "kept", {"Ref": "AWS::NoValue"}]},
                "List": ["x", {"Fn::If": ["IsA", {"Ref": "AWS::NoValue"}, "y"]}],
                "Size": {"Ref": "Size"},
                "Other": {"Fn::GetAtt": ["OnlyA", "Arn"]},
            },
        },
        "OnlyA": {"Type": "AWS::X::Y", "Condition": "IsA", "Properties": {}},
    },
    "Outputs": {"Named": {"Value": {"Fn::Sub": "${OnlyA}-${AWS::Region}"}, "Condition": "Either"}},
}


def test_the_evaluator_resolves_conditions_ifs_refs_and_no_value():
    a = Evaluated(TINY, {})
    assert a.resources["Always"]["Properties"] == {
        "Picked": "first",
        "List": ["x"],
        "Size": 3,
        "Other": {"Fn::GetAtt": ["OnlyA", "Arn"]},
    }
    assert set(a.resources) == {"Always", "OnlyA"} and set(a.outputs) == {"Named"}
    b = Evaluated(TINY, {"Mode": "b"})
    assert b.resources["Always"]["Properties"]["Picked"] == "second"
    assert b.resources["Always"]["Properties"]["Dropped"] == "kept"
    assert b.resources["Always"]["Properties"]["List"] == ["x", "y"]
    assert set(b.resources) == {"Always"}
    assert (b.condition("Either"), Evaluated(TINY, {"Size": 4}).condition("Either")) == (True, False)
    with pytest.raises(TemplateError, match="not one of"):
        Evaluated(TINY, {"Mode": "c"})


def test_the_evaluator_finds_references_to_absent_resources(tmp_path):
    root = {
        "Parameters": TINY["Parameters"],
        "Resources": {
            "Child": {
                "Type": "AWS::CloudFormation::Stack",
                "Properties": {
                    "TemplateURL": "https://bucket/abc123.json",
                    "Parameters": {"Mode": {"Ref": "Mode"}, "Size": {"Ref": "Size"}},
                },
            }
        },
        "Outputs": {"FromChild": {"Value": {"Fn::GetAtt": ["Child", "Outputs.Named"]}}},
    }
    (tmp_path / "Root.template.json").write_text(json.dumps(root))
    (tmp_path / "child.json").write_text(json.dumps(TINY))
    (tmp_path / "Root.assets.json").write_text(json.dumps({"files": {"abc123": {"source": {"path": "child.json"}}}}))
    app = SynthesizedApp.load(tmp_path, "Root")
    assert Deployment(app, {}).dangling() == []
    # Mode b: OnlyA is gone, but the child still reads it.
    assert Deployment(app, {"Mode": "b"}).dangling() == [
        "Child: Resources.Always -> OnlyA",
        "Child: Outputs.Named -> OnlyA",
    ]
    # Size 4: the child's output is gone, but the root still reads it.
    assert Deployment(app, {"Size": 4}).dangling() == ["root: Outputs.FromChild -> Child.Outputs.Named"]
