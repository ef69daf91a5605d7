"""Where msgtrack's data lives: the DynamoDB tables, built from the one definition in
``functions/shared/tables.py``, and the fallback queue for raw events DynamoDB refused.

Physical names are CloudFormation's; each function learns the names of the tables it may use through
the specs' ``MSGTRACK_<TABLE>_TABLE`` variables. Access is granted per table as named action sets,
item actions on the table and ``Query`` on the named indexes only, never ``Scan`` or ``DeleteItem``.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.shared import fallback
from functions.shared.settings import DEFAULT_RAW_EVENT_SHARDS, RAW_EVENT_SHARDS_ENV
from functions.shared.tables import ALL_TABLES, RAW_EVENTS, Index, Key, TableSpec
from infra.constants import (
    FALLBACK_RETENTION,
    FALLBACK_VISIBILITY_TIMEOUT,
)

READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem")
CONDITION_CHECK = ("dynamodb:ConditionCheckItem",)  # TransactWriteItems' ConditionCheck actions
INDEX_QUERY = ("dynamodb:Query",)


_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: Key) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_ATTRIBUTE_TYPES[key.type])


def table_construct_id(spec: TableSpec) -> str:
    """``tracking-logs`` -> ``TrackingLogsTable``."""
    return "".join(part.capitalize() for part in spec.logical_name.split("-")) + "Table"


class Storage(Construct):
    """Every msgtrack table (on demand, point-in-time recovery, TTL where the spec has one, encrypted)
    and the raw-event fallback queue."""

    def __init__(
        self, scope: Construct, construct_id: str, *, raw_event_shards: int = DEFAULT_RAW_EVENT_SHARDS
    ) -> None:
        """``raw_event_shards``: the raw-events table's partition keys, which every function that uses
        the table must agree on (``raw_events.shard_of``)."""
        super().__init__(scope, construct_id)
        self.raw_event_shards = raw_event_shards
        self._tables = {spec.logical_name: self._build_table(spec) for spec in ALL_TABLES}
        self.fallback_queue = self._build_fallback_queue()

    def _build_table(self, spec: TableSpec) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            table_construct_id(spec),
            partition_key=_attribute(spec.hash_key),
            sort_key=_attribute(spec.range_key) if spec.range_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=spec.ttl_attribute,
            stream=dynamodb.StreamViewType[spec.stream] if spec.stream else None,
            # Deliveries, tracking logs and indicators outlive the stack: deleting it keeps the tables.
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in spec.indexes:
            self._add_index(table, index)
        return table

    @staticmethod
    def _add_index(table: dynamodb.Table, index: Index) -> None:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=_attribute(index.hash_key),
            sort_key=_attribute(index.range_key) if index.range_key else None,
            # None projects every attribute; a tuple projects the keys and those attributes only.
            projection_type=dynamodb.ProjectionType.ALL
            if index.include is None
            else dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(index.include) if index.include is not None else None,
        )

    def _build_fallback_queue(self) -> sqs.Queue:
        # The redirect sends here the raw-event items DynamoDB kept refusing; every run of the
        # tracking workflow puts them back into the raw-events table (functions/shared/fallback.py).
        queue = sqs.Queue(
            self,
            "RawEventFallback",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=FALLBACK_RETENTION,
            visibility_timeout=FALLBACK_VISIBILITY_TIMEOUT,
        )
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="No dead-letter queue on purpose: only the tracking workflow reads this queue; it "
                "deletes each message once its raw event is back in the table and drops at once one that "
                "is not a raw event, so nothing can loop, and a DLQ would hide raw events from it.",
            )
        )
        return queue

    def table(self, spec: TableSpec) -> dynamodb.Table:
        return self._tables[spec.logical_name]

    def grant(
        self,
        function: lambda_.Function,
        spec: TableSpec,
        actions: tuple[str, ...],
        *,
        index_query: bool = False,
        leading_keys: tuple[str, ...] | None = None,
    ) -> None:
        """Allow ``actions`` on the table's items (and ``Query`` on its indexes if asked); tell
        ``function`` the table's name. A function knows only the tables it may use. With
        ``leading_keys``, only on items whose partition key is one of them (``dynamodb:LeadingKeys``)."""
        table = self.table(spec)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=list(actions),
                resources=[table.table_arn],
                conditions=(
                    {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(leading_keys)}}
                    if leading_keys
                    else None
                ),
            )
        )
        if index_query and spec.indexes:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=list(INDEX_QUERY),
                    resources=[f"{table.table_arn}/index/{index.name}" for index in spec.indexes],
                )
            )
        function.add_environment(spec.env_var, table.table_name)
        if spec is RAW_EVENTS:  # whoever writes, reads or queries raw events finds them by their shard
            function.add_environment(RAW_EVENT_SHARDS_ENV, str(self.raw_event_shards))

    def grant_fallback_send(self, function: lambda_.Function) -> None:
        """Let ``function`` hand raw events to the fallback queue, and tell it where the queue is."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.fallback_queue.queue_arn])
        )
        function.add_environment(fallback.QUEUE_URL_ENV, self.fallback_queue.queue_url)

    def grant_fallback_drain(self, function: lambda_.Function) -> None:
        """Let ``function`` receive and delete the queue's messages (DeleteMessageBatch included)."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                resources=[self.fallback_queue.queue_arn],
            )
        )
        function.add_environment(fallback.QUEUE_URL_ENV, self.fallback_queue.queue_url)
