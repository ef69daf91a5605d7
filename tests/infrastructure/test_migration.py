"""The storage migration's grant (README "Upgrading"): only a deploy with ``-c migration=true`` lets the
consolidation function run the ``migrate`` step, with exactly the actions ``migrate.py`` calls beyond
what a run already may; a deploy without it is the stack as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from cfnlint.api import lint

from functions.consolidate.migrate import DynamoMigrationStore, migrate
from functions.shared.models import stored_recipient_key
from functions.shared.tables import (
    ALL_TABLES,
    INDICATORS,
    TRACKING_LOGS,
    TableSpec,
    legacy_tracking_log_partition,
)
from infra.http_api import ConfigurationError
from tests.infrastructure.synth import (
    NO_BUNDLING,
    Synthesized,
    cdk_json_context,
    describe_resource,
    permissions,
)
from tests.infrastructure.test_checks import ACCEPTED_LINT
from tests.infrastructure.test_permissions import FORBIDDEN_EVERYWHERE
from tests.stored_logs import create_old_logs_table

OLD_LOGS = "msgtrack-StorageTrackingLogsTable1A2B3C4D-OLD0LOGS0TABLE"
MIGRATION = {"migration": "true"}
MIGRATION_WITH_OLD_LOGS = {**MIGRATION, "migration_old_logs_table": OLD_LOGS}
# The old table's ARN as synth.describe_resource reads it: built from the stack's partition, region and
# account, since the table is not the stack's any more
OLD_LOGS_ARN = f"arn:AWS::Partition:dynamodb:AWS::Region:AWS::AccountId:table/{OLD_LOGS}"

Variant = Callable[..., Synthesized]


def _table_id(synthesized: Synthesized, spec: TableSpec) -> str:
    return synthesized.logical_id(synthesized.stack.storage.table(spec))


def _consolidation_role(synthesized: Synthesized) -> Any:
    return synthesized.stack.workflow.handler.role


def _roles(synthesized: Synthesized) -> list[str]:
    return sorted(synthesized.of_type("AWS::IAM::Role"))


def _statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synthesized.of_type("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _added(synthesized: Synthesized, default: Synthesized) -> dict[str, Any]:
    """The resources ``synthesized`` has and ``default`` has not."""
    return {k: v for k, v in synthesized.resources.items() if k not in default.resources}


def _granted_by(policy: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, resource) one policy resource allows."""
    return {
        (action, describe_resource(resource))
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for resource in (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
    }


def test_a_deploy_without_the_migration_context_is_the_stack_as_it_was(synthesize_variant: Variant) -> None:
    # Given the stack synthesized without the context, with migration=false and with the migration
    default = synthesize_variant()
    off = synthesize_variant(migration="false")
    on = synthesize_variant(**MIGRATION_WITH_OLD_LOGS)
    # Then migration=false is the same template, byte for byte, as no context at all
    assert json.dumps(off.template_json, sort_keys=True) == json.dumps(default.template_json, sort_keys=True)
    assert default.stack.migration is None and off.stack.migration is None
    # And the migration adds one policy and changes nothing else: every other resource, policy,
    # role, output and parameter is the same JSON
    added = _added(on, default)
    assert set(added) == {on.logical_id(on.stack.migration.policy)}
    remainder = {**on.template_json, "Resources": {k: v for k, v in on.resources.items() if k not in added}}
    assert json.dumps(remainder, sort_keys=True) == json.dumps(default.template_json, sort_keys=True)


def test_by_default_no_policy_of_any_role_may_scan_or_delete_items(synthesized: Synthesized) -> None:
    # Given the default deployment (as `npx cdk synth` writes it), every policy of every role
    # Then none allows a Scan, a DeleteItem or a wildcard action
    for statement in _statements(synthesized):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not set(actions) & FORBIDDEN_EVERYWHERE, statement


def test_the_migration_lets_the_consolidation_function_scan_and_delete_indicators_and_scan_the_logs(
    synthesize_variant: Variant,
) -> None:
    # Given the stack synthesized with -c migration=true -c migration_old_logs_table=<the retained table>
    default, on = synthesize_variant(), synthesize_variant(**MIGRATION_WITH_OLD_LOGS)
    # When the added policy is read
    [policy] = _added(on, default).values()
    # Then it is attached to the consolidation function's role only
    assert policy["Properties"]["Roles"] == [{"Ref": on.logical_id(_consolidation_role(on))}]
    # And it adds exactly Scan and DeleteItem on the indicators table (not its indexes), Scan on the
    # tracking-logs table (not its index) and Scan on the old tracking-logs table, by its ARN,
    # unconditionally
    indicators, logs = _table_id(on, INDICATORS), _table_id(on, TRACKING_LOGS)
    role = _consolidation_role(on)
    granted = {
        ("dynamodb:Scan", indicators),
        ("dynamodb:DeleteItem", indicators),
        ("dynamodb:Scan", logs),
        ("dynamodb:Scan", OLD_LOGS_ARN),
    }
    assert permissions(on, role) - permissions(default, _consolidation_role(default)) == granted
    assert _granted_by(policy) == granted
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert len(statements) == 3
    assert all(statement["Effect"] == "Allow" and "Condition" not in statement for statement in statements)
    # And no other role gains anything
    assert _roles(on) == _roles(default)
    others = [name for name in _roles(on) if name != on.logical_id(role)]
    for statement in _statements(on):
        if statement not in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not set(actions) & FORBIDDEN_EVERYWHERE, statement
    assert others  # the loop above would prove nothing on a stack with one role


def test_without_the_old_logs_table_the_migration_reads_no_other_table(
    synthesize_variant: Variant,
) -> None:
    # Given the migration without an old tracking-logs table (it moves the states only)
    default, on = synthesize_variant(), synthesize_variant(**MIGRATION)
    # Then the consolidation function may scan and delete indicators items, scan the tracking logs,
    # and read no other table
    indicators = _table_id(on, INDICATORS)
    assert permissions(on, _consolidation_role(on)) - permissions(default, _consolidation_role(default)) == {
        ("dynamodb:Scan", indicators),
        ("dynamodb:DeleteItem", indicators),
        ("dynamodb:Scan", _table_id(on, TRACKING_LOGS)),
    }


@pytest.mark.parametrize("context", [MIGRATION, MIGRATION_WITH_OLD_LOGS], ids=["states", "states-and-logs"])
def test_the_migration_deploy_passes_cdk_nag_and_cfn_lint(
    synthesize_variant: Variant, context: dict[str, str]
) -> None:
    # Given the stack synthesized with the migration (a cdk-nag finding not acknowledged fails the synth)
    on = synthesize_variant(**context)
    # Then cdk-nag reports nothing and the migration's policy needs no acknowledgment (no wildcard)
    report = json.loads((on.outdir / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin["violations"]] == []
    [policy] = (r for k, r in on.resources.items() if k == on.logical_id(on.stack.migration.policy))
    assert "Metadata" not in policy or "cdk_nag" not in policy["Metadata"]
    # And cfn-lint finds nothing it would not find in the default template
    matches = lint(json.dumps(on.template_json), regions=["us-east-1", "eu-west-1"])
    assert [str(match) for match in matches if match.rule.id not in ACCEPTED_LINT] == []


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"migration": "yes"}, "migration must be true or false"),
        ({"migration_old_logs_table": OLD_LOGS}, "migration_old_logs_table.*migration=true"),
        ({**MIGRATION, "migration_old_logs_table": "tracking logs"}, "migration_old_logs_table"),
        ({**MIGRATION, "migration_old_logs_table": "no/slashes"}, "migration_old_logs_table"),
        ({**MIGRATION, "migration_old_logs_table": "x" * 256}, "migration_old_logs_table"),
    ],
)
def test_a_migration_context_that_names_no_table_or_no_migration_is_refused_at_synth(
    context: dict[str, str], message: str
) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigurationError, match=message):
        build_app(context={**cdk_json_context(), **NO_BUNDLING, **context})


# --- the grant against what the code calls ---------------------------------------------------------


def _seed_legacy_data(client: Any) -> None:
    """A legacy recipient state, a legacy person state, one whose new key a run wrote already (a
    conflict), and an old log: every path of the migration runs."""
    indicators = INDICATORS.table_name
    for sk in ("r#r1", "p#p1", "r#r2"):
        client.put_item(
            TableName=indicators,
            Item={"delivery_id": {"S": "d1"}, "sk": {"S": sk}, "recipient_id": {"S": sk[2:]}},
        )
    pk, sk = stored_recipient_key("d1", "r2")
    client.put_item(
        TableName=indicators,
        Item={
            "delivery_id": {"S": pk},
            "sk": {"S": sk},
            "recipient_id": {"S": "r2"},
            "opened": {"BOOL": True},
        },
    )
    client.put_item(
        TableName=OLD_LOGS,
        Item={
            "delivery_id": {"S": "d1"},
            "sk": {"S": "2026-11-30T10:00:00Z#e1"},
            "recipient_id": {"S": "r1"},
            "event_id": {"S": "e1"},
            "at": {"S": "2026-11-30T10:00:00Z"},
            "type": {"S": "open"},
        },
    )
    client.put_item(  # a log stored an item of its own, as before chains
        TableName=TRACKING_LOGS.table_name,
        Item={
            "partition": {"S": legacy_tracking_log_partition("d1", "r2")},
            "delivery_id": {"S": "d1"},
            "sk": {"S": "2026-11-30T11:00:00Z#e2"},
            "recipient_id": {"S": "r2"},
            "event_id": {"S": "e2"},
            "at": {"S": "2026-11-30T11:00:00Z"},
            "type": {"S": "open"},
        },
    )


def _calls_of_a_migration(client: Any) -> set[tuple[str, str]]:
    """(IAM action, table name) of every DynamoDB request a whole migration makes."""
    calls: set[tuple[str, str]] = set()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
        calls.update((f"dynamodb:{model.name}", table) for table in tables)

    client.meta.events.register("before-parameter-build.dynamodb", record)
    answer = migrate(DynamoMigrationStore(client), OLD_LOGS, lock_seconds=60)
    assert answer["done"] and answer["moved"] == 2 and answer["conflicts"] == 1 and answer["logs_copied"] == 1
    assert answer["logs_chained"] == 1
    return calls


def test_the_migration_grant_is_exactly_what_the_migration_calls_beyond_a_run(
    aws_tables: None, synthesize_variant: Variant
) -> None:
    # Given a deployment with legacy states and a retained old tracking-logs table
    client = boto3.client("dynamodb")
    create_old_logs_table(client, OLD_LOGS)
    _seed_legacy_data(client)
    # When the migration runs through, every request recorded with its table
    calls = _calls_of_a_migration(client)
    # Then, reading each table name as the template names the table, what it needs ...
    default, on = synthesize_variant(), synthesize_variant(**MIGRATION_WITH_OLD_LOGS)
    targets = {spec.table_name: _table_id(on, spec) for spec in ALL_TABLES} | {OLD_LOGS: OLD_LOGS_ARN}
    needed = {(action, targets[table]) for action, table in calls}
    # ... the consolidation function may do with the migration's grant
    with_grant = permissions(on, _consolidation_role(on))
    assert needed <= with_grant, needed - with_grant
    # And the grant's policy holds exactly what a run's permissions lack: nothing more, nothing twice
    without_grant = permissions(default, _consolidation_role(default))
    [policy] = _added(on, default).values()
    assert _granted_by(policy) == needed - without_grant
    assert needed - without_grant  # the default role could not migrate: the grant is needed
