"""Synthesizing the CDK app as ``npx cdk synth`` does (cdk.json context), and reading the template:
who may do what, which variable a function gets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

# jsii starts Node.js when aws_cdk is first imported; Node 20 is past its end of life here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build_app
from infra.bundling import EXCLUDED_FROM_CODE
from infra.constants import FUNCTIONS_DIR, REPO_ROOT
from infra.stack import TrackingStack

# Skips bundling: for variants that only change configuration, not code.
NO_BUNDLING: dict[str, list[str]] = {"aws:cdk:bundling-stacks": []}


def cdk_json_context() -> dict[str, Any]:
    """The context the CDK CLI passes to the app (feature flags from cdk.json)."""
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


@dataclass
class Synthesized:
    app: App
    stack: TrackingStack
    outdir: Path
    template: Template
    source_files: set[str]  # functions/ as it was when the asset was bundled

    @cached_property
    def template_json(self) -> dict[str, Any]:
        return dict(self.template.to_json())

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.template_json["Resources"])

    def logical_id(self, construct: Any) -> str:
        """The logical id of an L2 construct's CloudFormation resource (or of a Cfn element)."""
        element = getattr(construct.node, "default_child", None) or construct
        return str(self.stack.resolve(element.logical_id))

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}


def source_files(functions_dir: Path = FUNCTIONS_DIR) -> set[str]:
    """Relative paths of the files the asset should carry: functions/ without caches or tests."""
    excluded_dirs = {p for p in EXCLUDED_FROM_CODE if not p.startswith("*")}
    found = set()
    for path in functions_dir.rglob("*"):
        relative = path.relative_to(functions_dir.parent)
        if path.is_file() and not excluded_dirs & set(relative.parts) and path.suffix != ".pyc":
            found.add(relative.as_posix())
    return found


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    files = source_files()
    app, stack = build_app(context={**cdk_json_context(), **(context or {})}, outdir=str(outdir))
    app.synth()
    return Synthesized(app, stack, outdir, Template.from_stack(stack), files)


# --- reading the template -------------------------------------------------------------------------


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def describe_resource(resource: Any) -> str:
    """A policy resource as ``LogicalId`` or ``LogicalId/index/name``; anything else as JSON."""
    if isinstance(resource, dict):
        if "Fn::GetAtt" in resource:
            return str(resource["Fn::GetAtt"][0])
        if "Ref" in resource:
            return str(resource["Ref"])
        if "Fn::Join" in resource:
            delimiter, parts = resource["Fn::Join"]
            return delimiter.join(describe_resource(part) for part in parts)
    if isinstance(resource, str):
        return resource
    return json.dumps(resource, sort_keys=True)


def permissions(synthesized: Synthesized, role: Any) -> set[tuple[str, str]]:
    """Every (action, resource) an IAM role is allowed, from all the policies attached to it."""
    role_id = synthesized.logical_id(role)
    allowed: set[tuple[str, str]] = set()
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            for action in _listify(statement["Action"]):
                for resource in _listify(statement["Resource"]):
                    allowed.add((action, describe_resource(resource)))
    return allowed


def actions_on(allowed: set[tuple[str, str]], resource: str) -> set[str]:
    return {action for action, target in allowed if target == resource}


def environment(synthesized: Synthesized, function: Any) -> dict[str, Any]:
    resource = synthesized.resources[synthesized.logical_id(function)]
    return dict(resource["Properties"]["Environment"]["Variables"])
