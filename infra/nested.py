"""A nested stack whose inputs are explicit CloudFormation parameters and that may be conditional."""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnCondition, CfnParameter, CfnResource, NestedStack
from constructs import Construct


class ParameterizedNestedStack(NestedStack):
    """Inputs are named parameters (``input("Name")``), so a parent can pass ``Fn::If`` values.

    ``condition`` is a condition of the parent: when false, CloudFormation removes the whole nested
    stack, which is how a parameter update switches a feature off.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        inputs: dict[str, str] | None = None,
        number_inputs: frozenset[str] = frozenset(),
        condition: CfnCondition | None = None,
    ) -> None:
        inputs = inputs or {}
        super().__init__(scope, construct_id, description=description, parameters=inputs)
        self._inputs = {
            name: CfnParameter(self, name, type="Number" if name in number_inputs else "String") for name in inputs
        }
        if condition is not None:
            cast(CfnResource, self.nested_stack_resource).cfn_options.condition = condition

    def input(self, name: str) -> str:
        return self._inputs[name].value_as_string

    def input_number(self, name: str) -> float:
        return self._inputs[name].value_as_number
