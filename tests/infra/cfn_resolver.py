"""A small CloudFormation evaluator for the synthesized templates, in the tests only.

Given the root template, its nested templates and parameter values, it evaluates ``Conditions``
(``Fn::Equals``, ``Fn::And``, ``Fn::Or``, ``Fn::Not``, ``Condition``), resolves ``Fn::If``, ``Ref`` to a
parameter and ``AWS::NoValue`` in properties and outputs, and says which resources and outputs exist.
A nested stack is evaluated with the parameters its (existing) stack resource passes it. What only
AWS knows at deploy time (``Fn::GetAtt``, ``Ref`` to a resource, ``Fn::Sub``...) stays as written,
with its insides resolved: an *opaque* value, equal to no literal.

``Deployment.dangling()`` lists every ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` name (and every
nested-stack output read through ``Outputs.X``) that points at something absent in this combination.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

NO_VALUE = object()
"""What ``{"Ref": "AWS::NoValue"}`` resolves to: the key or list item is dropped."""

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
SUB_NAME = re.compile(r"\$\{([^!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something this evaluator does not model (or refers to a missing name)."""


@dataclass(frozen=True, eq=False)  # hashed by identity: one per synthesized app
class SynthesizedApp:
    """The root template and the nested ones, by the logical id of their stack resource in the root."""

    root: dict[str, Any]
    nested: dict[str, dict[str, Any]]
    names: dict[str, str]
    """Logical id of a nested stack resource -> its construct id (``Api``)."""

    @classmethod
    def load(cls, outdir: Path, stack_name: str = "ImageSimilarity") -> SynthesizedApp:
        root = json.loads((outdir / f"{stack_name}.template.json").read_text())
        assets = json.loads((outdir / f"{stack_name}.assets.json").read_text())["files"]
        nested, names = {}, {}
        for logical_id, body in root["Resources"].items():
            if body["Type"] != "AWS::CloudFormation::Stack":
                continue
            url = json.dumps(body["Properties"]["TemplateURL"])
            key = next(key for key in assets if key in url)
            nested[logical_id] = json.loads((outdir / assets[key]["source"]["path"]).read_text())
            names[logical_id] = logical_id.split("NestedStack")[0]
        return cls(root, nested, names)

    def logical_id(self, name: str) -> str:
        return next(logical_id for logical_id, construct in self.names.items() if construct == name)


@dataclass
class Evaluated:
    """One template evaluated under parameter values."""

    template: dict[str, Any]
    parameters: dict[str, Any]
    _conditions: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise TemplateError(f"parameters not declared: {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            if name in self.parameters:
                values[name] = self.parameters[name]
            elif "Default" in spec:
                values[name] = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no value and no default")
            allowed = spec.get("AllowedValues")
            if allowed is not None and not _opaque(values[name]) and str(values[name]) not in map(str, allowed):
                raise TemplateError(f"parameter {name}={values[name]!r} is not one of {allowed}")
        self.values = values

    # --- conditions ---------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            try:
                expression = self.template["Conditions"][name]
            except KeyError:
                raise TemplateError(f"no condition {name}") from None
            self._conditions[name] = self._truth(expression)
        return self._conditions[name]

    def _truth(self, expression: Any) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise TemplateError(f"not a condition expression: {expression!r}")
        (function, argument), *_ = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(side) for side in argument)
            if _opaque(left) or _opaque(right):
                return left == right  # two identical intrinsics are equal; an intrinsic equals no literal
            return str(left) == str(right)
        if function == "Fn::And":
            return all(self._truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item) for item in argument)
        if function == "Fn::Not":
            (inner,) = argument
            return not self._truth(inner)
        raise TemplateError(f"unknown condition function {function}")

    # --- values -------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Ref":
                if argument == "AWS::NoValue":
                    return NO_VALUE
                if argument in self.values:
                    return self.values[argument]
                return value
        resolved = {key: self.resolve(inner) for key, inner in value.items()}
        return {key: inner for key, inner in resolved.items() if inner is not NO_VALUE}

    # --- what exists ----------------------------------------------------------------------------

    def _exists(self, body: dict[str, Any]) -> bool:
        return "Condition" not in body or self.condition(body["Condition"])

    @cached_property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources that exist, with their ``Properties`` (and ``DependsOn``) resolved."""
        return {
            name: {**body, "Properties": self.resolve(body.get("Properties", {}))}
            for name, body in self.template.get("Resources", {}).items()
            if self._exists(body)
        }

    @cached_property
    def outputs(self) -> dict[str, Any]:
        return {
            name: self.resolve(body["Value"])
            for name, body in self.template.get("Outputs", {}).items()
            if self._exists(body)
        }

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: body for name, body in self.resources.items() if body["Type"] == resource_type}

    def only(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.of_type(resource_type)
        if len(found) != 1:
            raise TemplateError(f"{len(found)} resources of type {resource_type}: {sorted(found)}")
        return next(iter(found.items()))


class Deployment:
    """The whole app (root and nested stacks) as CloudFormation would make it with these parameters."""

    def __init__(self, app: SynthesizedApp, parameters: dict[str, Any]) -> None:
        self.app = app
        self.root = Evaluated(app.root, parameters)
        self.stacks: dict[str, Evaluated] = {}
        """Construct id (``Api``) -> the nested stack, for the nested stacks that exist."""
        for logical_id, body in self.root.resources.items():
            if body["Type"] == "AWS::CloudFormation::Stack":
                given = body["Properties"].get("Parameters", {})
                self.stacks[app.names[logical_id]] = Evaluated(app.nested[logical_id], given)

    def stack(self, name: str) -> Evaluated:
        return self.stacks[name]

    def dangling(self) -> list[str]:
        """Every reference to something absent: ``<stack>: <where> -> <name>``."""
        found = [f"root: {where} -> {name}" for where, name in self._dangling_in(self.root, "root")]
        for name, stack in self.stacks.items():
            found += [f"{name}: {where} -> {target}" for where, target in self._dangling_in(stack, name)]
        return found

    def _dangling_in(self, stack: Evaluated, stack_name: str) -> list[tuple[str, str]]:
        places: list[tuple[str, Any]] = [(f"Resources.{n}", body) for n, body in stack.resources.items()]
        places += [(f"Outputs.{n}", value) for n, value in stack.outputs.items()]
        missing = []
        for where, value in places:
            if isinstance(value, dict) and "DependsOn" in value:
                for target in _as_list(value["DependsOn"]):
                    if target not in stack.resources:
                        missing.append((f"{where}.DependsOn", target))
            body = value["Properties"] if isinstance(value, dict) and "Type" in value else value
            for target, attribute in _references(body):
                if target in stack.values or target in PSEUDO_PARAMETERS:
                    continue
                if stack is not self.root and target in self.app.root["Resources"]:
                    continue  # a value the root passed in: checked where the root's stack resource passes it
                if target not in stack.resources:
                    missing.append((where, target))
                elif attribute and attribute.startswith("Outputs.") and stack is self.root:
                    nested = self.stacks[self.app.names[target]]
                    if attribute.removeprefix("Outputs.") not in nested.outputs:
                        missing.append((where, f"{self.app.names[target]}.{attribute}"))
        return missing


def _references(value: Any) -> list[tuple[str, str | None]]:
    """(name, attribute) of every Ref, GetAtt and Fn::Sub variable inside ``value``."""
    found: list[tuple[str, str | None]] = []
    if isinstance(value, list):
        for item in value:
            found += _references(item)
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.append((inner, None))
            elif key == "Fn::GetAtt":
                target, attribute = inner if isinstance(inner, list) else inner.split(".", 1)
                found.append((target, attribute))
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else inner
                for name in SUB_NAME.findall(text):
                    if name not in variables:
                        target, _, attribute = name.partition(".")
                        found.append((target, attribute or None))
                found += _references(variables)
            else:
                found += _references(inner)
    return found


def _opaque(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


DEPLOY_TIME_TEXT = "known-at-deploy-time"


def runtime_environment(variables: dict[str, Any]) -> dict[str, str]:
    """A function's ``IMSIM_*`` variables as the runtime reads them: a value CloudFormation fills in at
    deploy time (a Ref, a GetAtt) becomes a placeholder where the setting takes free text, and is left
    out where it does not (the runtime's default stands in for it)."""
    import typing

    from runtime.settings import Settings

    readable: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, str):
            readable[name] = value
            continue
        field = Settings.model_fields.get(name.removeprefix("IMSIM_").lower())
        if field is not None and (field.annotation is str or str in typing.get_args(field.annotation)):
            readable[name] = DEPLOY_TIME_TEXT
    return readable
