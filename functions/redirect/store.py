"""DynamoDB behind the redirect: read a tracked URL's target, put one raw event. boto3 only."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from functions.redirect.tracking import Target
from functions.shared import raw_events
from functions.shared.observability import MetricNames, logger, metrics
from functions.shared.raw_events import RawEvent
from functions.shared.tables import RAW_EVENTS, TRACKED_URLS

# Fail fast: a recipient is waiting for the redirect.
_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})


class DynamoTargets:
    def __init__(self, client: Any = None) -> None:
        self._client = client or boto3.client("dynamodb", config=_CONFIG)
        self._table = TRACKED_URLS.table_name

    def target(self, delivery_id: str, url_id: str) -> Target | None:
        found = self._client.get_item(
            TableName=self._table,
            Key={"delivery_id": {"S": delivery_id}, "url_id": {"S": url_id}},
            ProjectionExpression="#u",
            ExpressionAttributeNames={"#u": "url"},
        ).get("Item")
        if not found:
            return None
        return Target(url=found["url"]["S"])


class DynamoEventSink:
    def __init__(self, ttl_days: int, client: Any = None) -> None:
        self._client = client or boto3.client("dynamodb", config=_CONFIG)
        self._table = RAW_EVENTS.table_name
        self._ttl_days = ttl_days

    def record(self, event: RawEvent) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=raw_events.to_item(event, self._ttl_days))
        except Exception:
            # The visitor still gets the redirect; the loss is counted and alarmed on.
            logger.exception("raw event not recorded", extra={"delivery_id": event.delivery_id})
            metrics.add_metric(name=MetricNames.RAW_EVENT_WRITE_FAILURES, unit="Count", value=1)
