"""Least privilege: each function's role may do what its code does, on its own tables, and no more."""

from __future__ import annotations

from typing import Any

import pytest

from functions.shared.models import WEBHOOKS_PK
from functions.shared.tables import (
    ALL_TABLES,
    DELIVERIES,
    INDICATORS,
    RAW_EVENTS,
    TRACKED_URLS,
    TRACKING_LOGS,
    WORKFLOW,
    TableSpec,
)
from infra.storage import READ, WRITE
from tests.infrastructure.synth import Synthesized, actions_on, environment, permissions

FORBIDDEN_EVERYWHERE = {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:*", "*"}


def _table_id(synthesized: Synthesized, spec: TableSpec) -> str:
    return synthesized.logical_id(synthesized.stack.storage.table(spec))


def _dynamodb(synthesized: Synthesized, role: Any) -> dict[str, set[str]]:
    """DynamoDB actions allowed to ``role``, by table logical name (``name/index/...`` for indexes)."""
    allowed = permissions(synthesized, role)
    by_target: dict[str, set[str]] = {}
    for spec in ALL_TABLES:
        table = _table_id(synthesized, spec)
        for action, target in allowed:
            if target == table or target.startswith(f"{table}/"):
                name = spec.logical_name + target[len(table) :]
                by_target.setdefault(name, set()).add(action)
    return by_target


def _roles(synthesized: Synthesized) -> dict[str, Any]:
    stack = synthesized.stack
    return {
        "redirect": stack.redirect.handler.role,
        "consolidate": stack.workflow.handler.role,
        "api": stack.reports.handler.role,
        "exports": stack.exports.handler.role,
    }


def test_the_redirect_function_writes_raw_events_and_reads_tracked_urls_and_nothing_else(
    synthesized: Synthesized,
) -> None:
    # Given the redirect function's role
    role = synthesized.stack.redirect.handler.role
    # Then its DynamoDB access is one PutItem and GetItem, on three tables
    assert _dynamodb(synthesized, role) == {
        "raw-events": {"dynamodb:PutItem"},
        "tracked-urls": {"dynamodb:GetItem"},
        "deliveries": {"dynamodb:GetItem"},
    }
    # And on the deliveries table only the settings partition (the machine-detection settings item)
    assert _workflow_statements(synthesized, role, DELIVERIES) == [
        ({"dynamodb:GetItem"}, {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["#settings"]}})
    ]
    # And besides that it may only hand refused raw events to the fallback queue, write its logs and
    # read the signing key
    others = {
        (action, target)
        for action, target in permissions(synthesized, role)
        if not action.startswith("dynamodb:")
    }
    assert others == {
        ("logs:CreateLogStream", synthesized.logical_id(synthesized.stack.redirect.handler.log_group)),
        ("logs:PutLogEvents", synthesized.logical_id(synthesized.stack.redirect.handler.log_group)),
        ("secretsmanager:GetSecretValue", synthesized.logical_id(synthesized.stack.secrets.signing_key)),
        ("secretsmanager:DescribeSecret", synthesized.logical_id(synthesized.stack.secrets.signing_key)),
        ("sqs:SendMessage", synthesized.logical_id(synthesized.stack.storage.fallback_queue)),
    }


def test_the_redirect_function_cannot_query_scan_or_delete(synthesized: Synthesized) -> None:
    actions = {action for action, _ in permissions(synthesized, synthesized.stack.redirect.handler.role)}
    assert not actions & {"dynamodb:Query", "dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:UpdateItem"}


def test_only_the_consolidation_function_writes_tracking_logs_and_indicators(
    synthesized: Synthesized,
) -> None:
    writes = set(WRITE) | {"dynamodb:DeleteItem"}
    for name, role in _roles(synthesized).items():
        access = _dynamodb(synthesized, role)
        for table in (TRACKING_LOGS.logical_name, INDICATORS.logical_name):
            written = access.get(table, set()) & writes
            if name == "consolidate":
                assert written == set(WRITE), table
            else:
                assert not written, f"the {name} function may write {table}: {written}"


def test_the_consolidation_function_reads_events_urls_and_messages_and_keeps_its_own_state(
    synthesized: Synthesized,
) -> None:
    assert _dynamodb(synthesized, synthesized.stack.workflow.handler.role) == {
        # PutItem: raw events drained from the fallback queue go back into their table;
        # BatchWriteItem: an erasure request deletes the recipient's raw events
        "raw-events": {*READ, "dynamodb:PutItem", "dynamodb:BatchWriteItem"},
        "tracked-urls": set(READ),
        "deliveries": set(READ),
        "tracking-logs": set(READ + WRITE),
        "indicators": set(READ + WRITE),
        "workflow": set(READ + WRITE),
    }


def test_the_api_function_never_touches_raw_events(synthesized: Synthesized) -> None:
    access = _dynamodb(synthesized, synthesized.stack.reports.handler.role)
    assert RAW_EVENTS.logical_name not in access
    assert RAW_EVENTS.env_var not in environment(synthesized, synthesized.stack.reports.function)


def test_the_api_function_writes_deliveries_in_transactions_and_reads_reports(
    synthesized: Synthesized,
) -> None:
    assert _dynamodb(synthesized, synthesized.stack.reports.handler.role) == {
        "deliveries": set(READ + WRITE) | {"dynamodb:ConditionCheckItem"},
        "deliveries/index/by_created": {"dynamodb:Query"},
        "tracked-urls": set(READ + WRITE),
        "tracking-logs": set(READ),
        "tracking-logs/index/opt_out_feed": {"dynamodb:Query"},  # the opt-out feed
        "indicators": set(READ),
        # runs, audit, erasure requests; export records (GetItem, conditional PutItem); webhooks
        # (BatchWriteItem to delete one: tests/infrastructure/test_events_out.py)
        "workflow": {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchWriteItem"},
    }


def _workflow_statements(
    synthesized: Synthesized, role: Any, spec: TableSpec = WORKFLOW
) -> list[tuple[set[str], Any]]:
    """(actions, condition) of each statement of ``role`` on the workflow table (or ``spec``'s)."""
    role_id = synthesized.logical_id(role)
    table = {"Fn::GetAtt": [_table_id(synthesized, spec), "Arn"]}
    found = []
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if table in resources:
                actions = statement["Action"]
                found.append(
                    (set(actions if isinstance(actions, list) else [actions]), statement.get("Condition"))
                )
    return found


def test_the_api_function_reaches_only_its_own_partitions_of_the_workflow_table(
    synthesized: Synthesized,
) -> None:
    # Given the API function's statements on the workflow table, but those on the webhooks partition
    # (tests/infrastructure/test_events_out.py)
    statements = [
        (actions, condition)
        for actions, condition in _workflow_statements(synthesized, synthesized.stack.reports.handler.role)
        if (condition or {}).get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys") != [WEBHOOKS_PK]
    ]

    def leading_keys(action: str) -> set[str]:
        [(_, condition)] = [(a, c) for a, c in statements if action in a]
        assert set(condition) == {"ForAllValues:StringEquals"}
        assert set(condition["ForAllValues:StringEquals"]) == {"dynamodb:LeadingKeys"}
        return set(condition["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"])

    # Then every statement is bound to partition keys: it lists runs and the audit trail, and adds
    # audit entries and pending erasure requests; the lock, checkpoints and pending batch ("state"),
    # done erasures and runs themselves are out of its reach
    assert all(condition is not None for _, condition in statements)
    assert set().union(*(actions for actions, _ in statements)) == {
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
    }
    assert leading_keys("dynamodb:Query") == {"runs", "audit"}
    put = [condition for actions, condition in statements if "dynamodb:PutItem" in actions]
    assert [set(c["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]) for c in put] == [
        {"audit", "erasures#pending"},
        {"exports"},  # export records, read and written (GetItem and PutItem) by key only
    ]


def test_the_partition_keys_the_api_function_is_granted_are_those_its_models_write() -> None:
    from functions.shared.models import (
        AUDIT_PK,
        ERASURE_PENDING_PK,
        RUNS_PK,
        STATE_PK,
        AuditModel,
        ErasureModel,
    )

    assert (RUNS_PK, AUDIT_PK, ERASURE_PENDING_PK) == ("runs", "audit", "erasures#pending")
    assert AuditModel().pk == AUDIT_PK and ErasureModel().pk == ERASURE_PENDING_PK
    assert STATE_PK not in {RUNS_PK, AUDIT_PK, ERASURE_PENDING_PK}


def test_the_workflow_function_keeps_the_whole_workflow_table(synthesized: Synthesized) -> None:
    # The consolidation function holds the lock, moves checkpoints and carries out erasures anywhere
    statements = _workflow_statements(synthesized, synthesized.stack.workflow.handler.role)
    assert statements and all(condition is None for _, condition in statements)


def test_the_api_function_may_start_the_workflow_and_read_both_secrets(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    allowed = permissions(synthesized, stack.reports.handler.role)
    # It starts executions of the workflow's state machine, and does nothing else with it or with Lambda
    assert actions_on(allowed, synthesized.logical_id(stack.workflow.state_machine)) == {
        "states:StartExecution"
    }
    assert {action for action, _ in allowed if action.startswith("states:")} == {"states:StartExecution"}
    # and with Lambda only starts the exports function (complete exports)
    assert {(a, t) for a, t in allowed if a.startswith("lambda:")} == {
        ("lambda:InvokeFunction", synthesized.logical_id(stack.exports.function))
    }
    for secret in (stack.secrets.signing_key, stack.secrets.api_token):
        assert actions_on(allowed, synthesized.logical_id(secret)) == {
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
        }


def test_only_the_api_function_reads_the_api_token_and_the_consolidation_function_no_secret(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    token = synthesized.logical_id(stack.secrets.api_token)
    signing_key = synthesized.logical_id(stack.secrets.signing_key)
    assert not actions_on(permissions(synthesized, stack.redirect.handler.role), token)
    consolidate = permissions(synthesized, stack.workflow.handler.role)
    assert not actions_on(consolidate, token) | actions_on(consolidate, signing_key)


@pytest.mark.parametrize("function", ["redirect", "consolidate", "api", "exports"])
def test_no_role_has_wildcards_deletes_scans_or_managed_policies(
    synthesized: Synthesized, function: str
) -> None:
    role = _roles(synthesized)[function]
    allowed = permissions(synthesized, role)
    assert not {action for action, _ in allowed} & FORBIDDEN_EVERYWHERE
    # The one pattern: objects under the exports bucket's exports/ prefix, whose keys are made at run time
    exports_objects = synthesized.logical_id(synthesized.stack.exports.bucket) + "/exports/*"
    assert not [target for _, target in allowed if "*" in target and target != exports_objects]
    role_resource = synthesized.resources[synthesized.logical_id(role)]["Properties"]
    assert "ManagedPolicyArns" not in role_resource
    assert "Policies" not in role_resource


@pytest.mark.parametrize(
    ("function", "tables"),
    [
        ("redirect", {RAW_EVENTS, TRACKED_URLS, DELIVERIES}),
        ("consolidate", {RAW_EVENTS, TRACKED_URLS, DELIVERIES, TRACKING_LOGS, INDICATORS, WORKFLOW}),
        ("api", {DELIVERIES, TRACKED_URLS, TRACKING_LOGS, INDICATORS, WORKFLOW}),
    ],
)
def test_a_function_knows_the_names_of_exactly_the_tables_it_may_use(
    synthesized: Synthesized, function: str, tables: set[TableSpec]
) -> None:
    stack = synthesized.stack
    lambda_function = {
        "redirect": stack.redirect.function,
        "consolidate": stack.workflow.function,
        "api": stack.reports.function,
    }[function]
    variables = environment(synthesized, lambda_function)
    table_variables = {name: value for name, value in variables.items() if name.endswith("_TABLE")}
    # Then it gets the physical name of each table it may use, and of no other table
    assert table_variables == {spec.env_var: {"Ref": _table_id(synthesized, spec)} for spec in tables}
    # And the tables it may use are exactly those it knows
    access = _dynamodb(synthesized, _roles(synthesized)[function])
    assert {name for name in access if "/index/" not in name} == {spec.logical_name for spec in tables}


def test_the_fallback_queue_is_fed_by_the_redirect_and_drained_by_the_workflow_only(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    queue = synthesized.logical_id(stack.storage.fallback_queue)
    sqs_actions = {
        name: {action for action, target in permissions(synthesized, role) if action.startswith("sqs:")}
        for name, role in _roles(synthesized).items()
    }
    assert sqs_actions == {
        "redirect": {"sqs:SendMessage"},
        "consolidate": {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        "api": set(),
        "exports": set(),
    }
    consolidate = permissions(synthesized, stack.workflow.handler.role)
    assert actions_on(consolidate, queue) == {"sqs:ReceiveMessage", "sqs:DeleteMessage"}
    # And both know where the queue is
    for function in (stack.redirect.function, stack.workflow.function):
        assert environment(synthesized, function)["MSGTRACK_FALLBACK_QUEUE_URL"] == {"Ref": queue}
    assert "MSGTRACK_FALLBACK_QUEUE_URL" not in environment(synthesized, stack.reports.function)
