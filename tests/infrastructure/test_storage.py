"""The DynamoDB tables: built from the shared specs, and equal to what the PynamoDB models expect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pynamodb.attributes import NumberAttribute

from functions.shared.models import ALL_MODELS
from functions.shared.tables import ALL_TABLES, RAW_EVENTS, WORKFLOW, TableSpec
from infra.constants import MAX_RAW_EVENT_SHARDS
from infra.http_api import ConfigurationError
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context


def _table(synthesized: Synthesized, spec: TableSpec) -> dict[str, Any]:
    return synthesized.resources[synthesized.logical_id(synthesized.stack.storage.table(spec))]


def _models_of(spec: TableSpec) -> list[Any]:
    return [model for model in ALL_MODELS if model.spec is spec]


def _keys(key_schema: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(key["AttributeName"], key["KeyType"]) for key in key_schema}


def _projection(projection: dict[str, Any]) -> tuple[str, frozenset[str]]:
    return projection["ProjectionType"], frozenset(projection.get("NonKeyAttributes", ()))


def _expected_from_models(spec: TableSpec) -> dict[str, Any]:
    """Keys, attribute definitions and indexes as the PynamoDB models of one table declare them."""
    schemas = [model._get_schema() for model in _models_of(spec)]
    key_schemas = {frozenset(_keys(schema["key_schema"])) for schema in schemas}
    assert len(key_schemas) == 1, f"the models of {spec.logical_name} disagree on its keys: {key_schemas}"
    indexes = {
        index["index_name"]: (_keys(index["key_schema"]), _projection(index["projection"]))
        for schema in schemas
        for index in schema["global_secondary_indexes"]
    }
    attributes = {
        (attribute["AttributeName"], attribute["AttributeType"])
        for schema in schemas
        for attribute in schema["attribute_definitions"]
    }
    return {"keys": key_schemas.pop(), "attributes": attributes, "indexes": indexes}


def _synthesized_shape(table: dict[str, Any]) -> dict[str, Any]:
    properties = table["Properties"]
    return {
        "keys": frozenset(_keys(properties["KeySchema"])),
        "attributes": {(a["AttributeName"], a["AttributeType"]) for a in properties["AttributeDefinitions"]},
        "indexes": {
            index["IndexName"]: (_keys(index["KeySchema"]), _projection(index["Projection"]))
            for index in properties.get("GlobalSecondaryIndexes", ())
        },
    }


def test_the_stack_has_exactly_one_table_per_shared_spec(synthesized: Synthesized) -> None:
    # Given the synthesized template
    tables = synthesized.of_type("AWS::DynamoDB::Table")
    # Then there is one table per spec, and each spec's table is among them
    assert len(tables) == len(ALL_TABLES)
    assert {synthesized.logical_id(synthesized.stack.storage.table(spec)) for spec in ALL_TABLES} == set(
        tables
    )


@pytest.mark.parametrize("spec", ALL_TABLES, ids=lambda spec: spec.logical_name)
def test_every_table_has_the_keys_and_indexes_of_its_pynamodb_models(
    synthesized: Synthesized, spec: TableSpec
) -> None:
    # Given the PynamoDB models stored in this table
    assert _models_of(spec), f"no PynamoDB model reads the {spec.logical_name} table"
    expected = _expected_from_models(spec)
    # When the table is synthesized
    actual = _synthesized_shape(_table(synthesized, spec))
    # Then keys, attribute definitions and secondary indexes (with projections) are the models' own
    assert actual == expected


@pytest.mark.parametrize("spec", ALL_TABLES, ids=lambda spec: spec.logical_name)
def test_every_table_is_on_demand_recoverable_encrypted_and_retained(
    synthesized: Synthesized, spec: TableSpec
) -> None:
    table = _table(synthesized, spec)
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # SSEEnabled without a key of ours: the AWS-managed key (aws/dynamodb), not the AWS-owned one
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    # Deleting or replacing the stack keeps the data
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    # CloudFormation names the table; the functions learn the name from the spec's variable
    assert "TableName" not in properties


@pytest.mark.parametrize("spec", ALL_TABLES, ids=lambda spec: spec.logical_name)
def test_time_to_live_is_on_exactly_where_the_spec_asks_and_the_model_stores_epoch_seconds(
    synthesized: Synthesized, spec: TableSpec
) -> None:
    ttl = _table(synthesized, spec)["Properties"].get("TimeToLiveSpecification")
    if spec.ttl_attribute is None:
        assert ttl is None
        return
    assert ttl == {"AttributeName": spec.ttl_attribute, "Enabled": True}
    if spec is WORKFLOW:
        # Only the pending batches' chunk items expire (the store writes them, with epoch seconds:
        # tests/integration/test_pending_chunks.py); no run record, quarantined item or state may
        return
    for model in _models_of(spec):
        attribute = model.get_attributes().get(spec.ttl_attribute)
        assert isinstance(attribute, NumberAttribute), f"{model.__name__}.{spec.ttl_attribute}"


def test_no_model_of_the_workflow_table_has_its_ttl_attribute_so_only_pending_chunks_expire() -> None:
    assert WORKFLOW.ttl_attribute is not None
    for model in _models_of(WORKFLOW):
        assert WORKFLOW.ttl_attribute not in model.get_attributes(), model.__name__


def test_raw_events_tracking_logs_and_pending_batch_chunks_are_the_only_items_that_expire(
    synthesized: Synthesized,
) -> None:
    with_ttl = {
        spec.logical_name
        for spec in ALL_TABLES
        if "TimeToLiveSpecification" in _table(synthesized, spec)["Properties"]
    }
    assert with_ttl == {"raw-events", "tracking-logs", "workflow"}


def test_the_raw_event_fallback_queue_is_encrypted_refuses_plain_http_and_keeps_events_two_weeks(
    synthesized: Synthesized,
) -> None:
    queue_id = synthesized.logical_id(synthesized.stack.storage.fallback_queue)
    queue = synthesized.resources[queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    policies = [
        policy["Properties"]
        for policy in synthesized.of_type("AWS::SQS::QueuePolicy").values()
        if policy["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    (policy,) = policies
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- the raw-event shard count (a deploy-time context value) ------------------------------------


def _shard_counts(synthesized: Synthesized) -> dict[str, str | None]:
    """``MSGTRACK_RAW_EVENT_SHARDS`` of every function, by the function's logical id."""
    return {
        logical_id: resource["Properties"]
        .get("Environment", {})
        .get("Variables", {})
        .get("MSGTRACK_RAW_EVENT_SHARDS")
        for logical_id, resource in synthesized.resources.items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def _raw_event_users(synthesized: Synthesized) -> set[str]:
    """The functions told the raw-events table's name: those that write, read or query it."""
    return {
        logical_id
        for logical_id, resource in synthesized.resources.items()
        if resource["Type"] == "AWS::Lambda::Function"
        and RAW_EVENTS.env_var in resource["Properties"].get("Environment", {}).get("Variables", {})
    }


def test_every_function_that_uses_raw_events_knows_the_shard_count_64_by_default(
    synthesized: Synthesized,
) -> None:
    # Given the stack with no raw_event_shards context value
    stack = synthesized.stack
    users = _raw_event_users(synthesized)
    # Then the redirect (writes), the workflow (reads) and the held-events publisher (a message's honeypot
    # hits) all shard by the same count, and no other function is told one
    assert {
        synthesized.logical_id(stack.redirect.function),
        synthesized.logical_id(stack.workflow.function),
    } <= users
    counts = _shard_counts(synthesized)
    assert {counts[logical_id] for logical_id in users} == {"64"}
    assert {logical_id for logical_id, count in counts.items() if count is not None} == users


def test_the_raw_event_shard_count_is_a_context_value(synthesize_variant: Callable[..., Synthesized]) -> None:
    # Given a deployment sized for 128,000 hits a second
    synthesized = synthesize_variant(raw_event_shards="128")
    # Then every function that uses raw events shards by 128
    counts = _shard_counts(synthesized)
    assert {counts[logical_id] for logical_id in _raw_event_users(synthesized)} == {"128"}


@pytest.mark.parametrize("shards", ["0", "-4", str(MAX_RAW_EVENT_SHARDS + 1), "sixty-four", "6.5"])
def test_a_raw_event_shard_count_out_of_bounds_is_refused_at_synth(shards: str) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigurationError, match="raw_event_shards"):
        build_app(context={**cdk_json_context(), **NO_BUNDLING, "raw_event_shards": shards})
