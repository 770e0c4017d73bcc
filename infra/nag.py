"""cdk-nag's AwsSolutions checks and the one way to acknowledge a finding (with its reason)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_nag_checks(app: App) -> None:
    """Run AwsSolutions at synth: any unacknowledged error fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str, applies_to: str | None = None) -> None:
    """Acknowledge ``rule`` (e.g. ``AwsSolutions-IAM5``) on ``scope`` and everything under it.

    ``applies_to`` narrows it to one finding (e.g. ``Resource::*``), so any other wildcard added
    later is still reported.
    """
    finding = f"{rule}[{applies_to}]" if applies_to else rule
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))


def resource_finding(scope: IConstruct, arn: str) -> str:
    """How cdk-nag names a policy resource in a finding (``Resource::arn:<AWS::Partition>:...``)."""
    return f"Resource::{_render(Stack.of(scope).resolve(arn))}"


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    raise ValueError(f"cannot name {value!r} as cdk-nag does")
