"""A nested stack whose inputs are explicit CloudFormation parameters and that may be conditional.

Each nested stack declares its inputs as a frozen dataclass (``NestedInputs``): the parent fills
it with values (tokens, ``Fn::If`` included), and the nested stack reads the same dataclass back
with each field turned into its own parameter (``self.inputs.stage_name`` is ``{"Ref": "StageName"}``
inside the nested template). A field left ``None`` makes no parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

from aws_cdk import CfnCondition, CfnParameter, CfnResource, ICfnConditionExpression, NestedStack, Token
from constructs import Construct


@dataclasses.dataclass(frozen=True)
class NestedInputs:
    """Base of every nested stack's inputs; a field ``stage_name`` is the parameter ``StageName``."""

    NUMBERS: ClassVar[frozenset[str]] = frozenset()
    """Fields passed as CloudFormation ``Number`` parameters (the others are ``String``)."""

    def parameters(self) -> dict[str, str]:
        """Parameter name -> value, for the fields that are set."""
        return {
            parameter_name(field.name): value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) is not None
        }


Inputs = TypeVar("Inputs", bound=NestedInputs)


def parameter_name(field_name: str) -> str:
    """``stage_name`` -> ``StageName``."""
    return "".join(part.capitalize() for part in field_name.split("_"))


def as_number(token: str) -> float:
    """A ``Number`` input, for a property that takes a number."""
    return Token.as_number(token)


def expression(condition: CfnCondition) -> ICfnConditionExpression:
    """A condition used inside another condition's expression (``{"Condition": name}``)."""
    return cast(ICfnConditionExpression, condition)


class ParameterizedNestedStack(NestedStack):
    """Inputs are named parameters, so a parent can pass ``Fn::If`` values.

    ``condition`` is a condition of the parent: when false, CloudFormation removes the whole nested
    stack, which is how a parameter update switches a feature off.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        inputs: NestedInputs | Mapping[str, str] | None = None,
        number_inputs: frozenset[str] = frozenset(),
        condition: CfnCondition | None = None,
    ) -> None:
        if isinstance(inputs, NestedInputs):
            values = inputs.parameters()
            numbers = {parameter_name(name) for name in inputs.NUMBERS} | number_inputs
        else:  # a plain mapping of parameter names (the stacks not yet converted)
            values = dict(inputs or {})
            numbers = set(number_inputs)
        super().__init__(scope, construct_id, description=description, parameters=values)
        self._inputs = {
            name: CfnParameter(self, name, type="Number" if name in numbers else "String") for name in values
        }
        self._typed_inputs = inputs if isinstance(inputs, NestedInputs) else None
        if condition is not None:
            cast(CfnResource, self.nested_stack_resource).cfn_options.condition = condition

    def typed_inputs(self, kind: type[Inputs]) -> Inputs:
        """The inputs as seen inside this stack: each set field is its parameter's ``Ref``."""
        given = self._typed_inputs
        if not isinstance(given, kind):
            raise TypeError(f"{type(self).__name__} was given {type(given).__name__}, not {kind.__name__}")
        inside: dict[str, Any] = {
            field.name: None if getattr(given, field.name) is None else self.input(parameter_name(field.name))
            for field in dataclasses.fields(given)
        }
        return dataclasses.replace(given, **inside)

    def input(self, name: str) -> str:
        return self._inputs[name].value_as_string

    def input_number(self, name: str) -> float:
        return self._inputs[name].value_as_number
