"""The checks a deployable stack passes: cdk-nag's AwsSolutions pack (every exception acknowledged with
its reason, and every acknowledgment needed), cfn-lint, and a synth with no credentials and no Docker."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Validations
from aws_cdk.assertions import Annotations, Match
from cfnlint.api import lint

from infra.app import build_app
from infra.constants import REPO_ROOT, STACK_NAME
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context

# cfn-lint findings left on purpose, each with its reason.
ACCEPTED_LINT = {
    # CDK adds DependsOn from a function to its role and the role's policy, so the function never
    # starts before its permissions exist; the role part is redundant with the GetAtt, harmless.
    "W3005",
}
MINIMUM_REASON_LENGTH = 80


def _violations(report_path: Path) -> list[tuple[str, str]]:
    """(rule, construct path) for every finding in a CDK validation report."""
    report = json.loads(report_path.read_text())
    return [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


@pytest.fixture(scope="module")
def without_acknowledgments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthesize with every acknowledgment recorded instead of applied: what would cdk-nag say?"""
    real_of = Validations.of
    acknowledged: list[tuple[str, str, str]] = []

    class RecordingValidations:
        def __init__(self, scope: Any) -> None:
            self._scope = scope

        def acknowledge(self, *rules: Any) -> None:
            acknowledged.extend((rule.id, self._scope.node.path, rule.reason) for rule in rules)

        def add_plugins(self, *plugins: Any) -> None:
            real_of(self._scope).add_plugins(*plugins)

    outdir = tmp_path_factory.mktemp("unacknowledged")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Validations, "of", staticmethod(RecordingValidations))
        app, _ = build_app(context={**cdk_json_context(), **NO_BUNDLING}, outdir=str(outdir))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    return {"acknowledged": acknowledged, "violations": _violations(outdir / "validation-report.json")}


def test_cdk_nag_finds_nothing_unacknowledged(synthesized: Synthesized) -> None:
    # Given the app as `cdk synth` builds it, with the AwsSolutions pack attached
    # Then the synth succeeded and its validation report lists no error and no warning
    assert _violations(synthesized.outdir / "validation-report.json") == []


def test_cdk_and_its_constructs_warn_about_nothing(synthesized: Synthesized) -> None:
    annotations = Annotations.from_stack(synthesized.stack)
    assert annotations.find_error("*", Match.any_value()) == []
    assert annotations.find_warning("*", Match.any_value()) == []


def test_every_cdk_nag_finding_is_acknowledged_where_it_occurs(
    without_acknowledgments: dict[str, Any],
) -> None:
    acknowledged = without_acknowledgments["acknowledged"]
    for rule, construct in without_acknowledgments["violations"]:
        assert any(
            rule == ack_rule and (construct == path or construct.startswith(path + "/"))
            for ack_rule, path, _ in acknowledged
        ), f"{rule} on {construct} is not acknowledged"


def test_every_acknowledgment_answers_a_real_finding(without_acknowledgments: dict[str, Any]) -> None:
    violations = without_acknowledgments["violations"]
    for rule, path, _ in without_acknowledgments["acknowledged"]:
        assert any(
            rule == found and (construct == path or construct.startswith(path + "/"))
            for found, construct in violations
        ), f"{rule} is acknowledged on {path} but cdk-nag finds nothing there"


def test_every_acknowledgment_gives_a_specific_reason(without_acknowledgments: dict[str, Any]) -> None:
    reasons_by_rule: dict[str, set[str]] = {}
    for rule, _, reason in without_acknowledgments["acknowledged"]:
        assert len(reason) >= MINIMUM_REASON_LENGTH, f"{rule}: {reason!r} is too short to explain anything"
        reasons_by_rule.setdefault(rule, set()).add(reason)
    # one rule, one or more reasons of its own; no reason copied between rules
    all_reasons = [reason for reasons in reasons_by_rule.values() for reason in reasons]
    assert len(all_reasons) == len(set(all_reasons))


def test_acknowledgments_are_written_into_the_template_for_reviewers(synthesized: Synthesized) -> None:
    suppressed = {
        rule["id"]
        for resource in synthesized.resources.values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    }
    # the known exceptions; a new one is a decision for review, not a side effect
    assert suppressed == {
        "AwsSolutions-APIG4",
        "AwsSolutions-L1",
        "AwsSolutions-SMG4",
        "AwsSolutions-SQS3",
        "AwsSolutions-SF2",  # no X-Ray, like the functions
        "AwsSolutions-IAM5[Resource::*]",  # the state machine's log delivery
    }
    # never stack-wide
    assert "cdk_nag" not in synthesized.template_json.get("Metadata", {})


def test_cfn_lint_finds_no_error_in_the_template(synthesized: Synthesized) -> None:
    matches = lint(json.dumps(synthesized.template_json), regions=["us-east-1", "eu-west-1"])
    unexpected = [str(match) for match in matches if match.rule.id not in ACCEPTED_LINT]
    assert unexpected == []
    assert not [match for match in matches if match.rule.id.startswith("E")]


def test_the_stack_is_environment_agnostic(synthesized: Synthesized) -> None:
    # No account or region is looked up or written in: `cdk deploy` takes them from the profile
    text = json.dumps(synthesized.template_json)
    assert '"Ref": "AWS::Region"' in text
    assert "123456789012" not in text
    assert not (synthesized.outdir / "cdk.context.json").exists()
    assert synthesized.stack.resolve(synthesized.stack.account) == {"Ref": "AWS::AccountId"}


def test_the_cdk_json_app_command_synthesizes_without_credentials_or_docker(tmp_path: Path) -> None:
    # Given a shell where node and the project's Python are the only programs, and no AWS credentials
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = shutil.which("node")
    assert node is not None, "the CDK app runs on Node.js (jsii)"
    (bin_dir / "node").symlink_to(node)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "DOCKER_", "CDK_")) and name != "PATH"
    }
    outdir = tmp_path / "cdk.out"
    environment |= {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),  # no ~/.aws either
        "CDK_OUTDIR": str(outdir),  # what the CDK CLI passes to the app
        "CDK_CONTEXT_JSON": json.dumps(cdk_json["context"]),
    }
    command = shlex.split(cdk_json["app"])
    assert command[0] == ".venv/bin/python"
    command[0] = sys.executable  # this checkout's interpreter, wherever the venv lives
    # When the app command runs as `npx cdk synth` would run it
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    # Then it writes the template and the bundled asset
    assert result.returncode == 0, result.stderr[-3000:]
    assert (outdir / f"{STACK_NAME}.template.json").is_file()
    assert list(outdir.glob("asset.*/functions/redirect/handler.py"))
