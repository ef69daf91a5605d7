"""The CDK app (``cdk.json`` runs ``python -m infra.app``): the msgtrack stack, checked by cdk-nag.

The stack is environment-agnostic (no account or region lookups), so ``cdk synth`` needs neither
AWS credentials nor Docker; ``cdk deploy`` takes the account and region from the AWS profile.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.constants import STACK_NAME
from infra.stack import TrackingStack


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[App, TrackingStack]:
    """The app and its stack, checked by cdk-nag's AwsSolutions pack: any finding that is not
    acknowledged (with its reason, next to the resource) stops the synth."""
    app = App(context=context, outdir=outdir)
    stack = TrackingStack(app, STACK_NAME)
    # cdk-nag 3 is a policy-validation plugin; acknowledgments are also written into the template's
    # resource Metadata (cdk_nag.rules_to_suppress), where reviewers and tests can read them.
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
