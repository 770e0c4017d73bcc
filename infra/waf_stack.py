"""Firewall nested stack: an AWS WAF web ACL in front of the API's stage (the ``Waf`` parameter).

Three rules, in order: the AWS managed IP reputation list, the AWS managed common rule set, and a
rate limit per client IP address. The common set's body size rule (8 KB) is only counted: request
bodies carry base64 images of up to API Gateway's 10 MB, which the runtime bounds itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.nested import NestedInputs, ParameterizedNestedStack, as_number

RATE_WINDOW_S = 300  # WAF counts a rate-based rule's requests over 5 minutes
WEB_ACL_OUTPUT = "WebAclArn"
MANAGED_RULE_GROUPS = (
    ("AWSManagedRulesAmazonIpReputationList", ()),
    ("AWSManagedRulesCommonRuleSet", ("SizeRestrictions_BODY",)),  # (group, rules only counted)
)


@dataclass(frozen=True)
class WafInputs(NestedInputs):
    NUMBERS = frozenset({"rate_limit"})

    stage_arn: str
    rate_limit: str
    """Requests one IP address may send in 5 minutes."""


class WafStack(ParameterizedNestedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, metric_prefix: str, inputs: WafInputs, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, description="Image Similarity: AWS WAF web ACL", inputs=inputs, **kwargs)
        inputs = self.typed_inputs(WafInputs)
        rules = [
            self._managed_rule(priority, group, counted, metric_prefix)
            for priority, (group, counted) in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=len(rules),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP",
                        limit=as_number(inputs.rate_limit),
                        evaluation_window_sec=RATE_WINDOW_S,
                    )
                ),
                visibility_config=_visibility(f"{metric_prefix}-RateLimitPerIp"),
            )
        )
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description="Image Similarity API: managed common rules, IP reputation, rate limit per IP",
            rules=rules,
            visibility_config=_visibility(metric_prefix),
        )
        wafv2.CfnWebACLAssociation(self, "StageAssociation", resource_arn=inputs.stage_arn, web_acl_arn=acl.attr_arn)
        self.web_acl_arn = acl.attr_arn
        CfnOutput(self, WEB_ACL_OUTPUT, value=acl.attr_arn, description="The web ACL in front of the stage")

    @staticmethod
    def _managed_rule(
        priority: int, group: str, counted: tuple[str, ...], metric_prefix: str
    ) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=group,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=group,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                        )
                        for rule in counted
                    ]
                    or None,
                )
            ),
            visibility_config=_visibility(f"{metric_prefix}-{group}"),
        )


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )
