"""cdk-nag (AwsSolutions) acknowledgements: every suppressed rule carries its reason."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``AwsSolutions-IAM5``) on ``scope`` and its children."""
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)
    )


# The same ARN twice: with CloudFormation pseudo parameters (for the policy) and as cdk-nag
# renders it in a finding id (to acknowledge exactly that wildcard, nothing broader).
PSEUDO = {
    "partition": ("AWS::Partition", cdk.Aws.PARTITION),
    "account": ("AWS::AccountId", cdk.Aws.ACCOUNT_ID),
    "region": ("AWS::Region", cdk.Aws.REGION),
}


def arn(template: str, **names: str) -> str:
    """``template`` with {partition}, {account}, {region} as pseudo parameters."""
    return template.format(**{k: v[1] for k, v in PSEUDO.items()}, **names)


def finding_resource(template: str, **names: str) -> str:
    """The ``Resource::...`` part of the IAM5 finding for ``arn(template)``."""
    return "Resource::" + template.format(**{k: f"<{v[0]}>" for k, v in PSEUDO.items()}, **names)


def acknowledge_wildcards(scope: IConstruct, resources: dict[str, str]) -> None:
    """Acknowledge AwsSolutions-IAM5 for exactly these resources (finding -> reason)."""
    for finding, reason in resources.items():
        acknowledge(scope, f"AwsSolutions-IAM5[{finding}]", reason)
