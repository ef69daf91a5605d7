"""DynamoDB behind the redirect: read a tracked URL's target or a web-tracking site, put one raw
event. boto3 only.

A raw event is never dropped quietly: a failed PutItem is retried with jittered backoff inside a
small budget (the recipient is waiting), then the item goes to the fallback queue, which the
tracking workflow drains. Only when both fail is the event lost, and then it is counted.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from functions.redirect.observability import MetricNames, logger, metrics
from functions.redirect.tracking import Target
from functions.redirect.web import SITES_PK, Site
from functions.shared import raw_events
from functions.shared.raw_events import RawEvent
from functions.shared.tables import DELIVERIES, RAW_EVENTS, TRACKED_URLS

SETTINGS_PK = "#settings"  # models.SETTINGS_PK (PynamoDB stays off the redirect's import path)
MACHINE_DETECTION_SK = "machine-detection"  # models.MACHINE_DETECTION_SK

# The fallback queue's URL, read once per container; its module is imported on the failure path only.
FALLBACK_QUEUE_URL_ENV = "MSGTRACK_FALLBACK_QUEUE_URL"  # fallback.QUEUE_URL_ENV

# Fail fast: a recipient is waiting. Retries are ours (RawEventSink), with a bounded budget.
_CONFIG = Config(connect_timeout=0.5, read_timeout=0.5, retries={"total_max_attempts": 1})
_TARGETS_CONFIG = Config(connect_timeout=0.5, read_timeout=1, retries={"mode": "standard", "max_attempts": 2})
PUT_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.025


class DynamoTargets:
    def __init__(self, client: Any = None) -> None:
        self._client = client or boto3.client("dynamodb", config=_TARGETS_CONFIG)
        self._table = TRACKED_URLS.table_name

    def target(self, delivery_id: str, url_id: str) -> Target | None:
        found = self._client.get_item(
            TableName=self._table,
            Key={"delivery_id": {"S": delivery_id}, "url_id": {"S": url_id}},
            ProjectionExpression="#u, deleted_at",
            ExpressionAttributeNames={"#u": "url"},
        ).get("Item")
        if not found:
            return None
        return Target(url=found["url"]["S"], gone="deleted_at" in found)


class DynamoSites:
    """Web-tracking sites, kept in the tracked-urls table under ``delivery_id = "#sites"``."""

    def __init__(self, client: Any = None) -> None:
        self._client = client or boto3.client("dynamodb", config=_TARGETS_CONFIG)
        self._table = TRACKED_URLS.table_name

    def site(self, site_id: str) -> Site | None:
        found = self._client.get_item(
            TableName=self._table,
            Key={"delivery_id": {"S": SITES_PK}, "url_id": {"S": site_id}},
            ProjectionExpression="#d",
            ExpressionAttributeNames={"#d": "domains"},
        ).get("Item")
        if found is None:
            return None
        domains = found.get("domains", {}).get("L", [])
        return Site(site_id, tuple(d["S"].lower() for d in domains if "S" in d))


class DynamoMachineSettings:
    """The operator's machine-detection settings item in the deliveries table (the only item of that
    table the redirect may read)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client or boto3.client("dynamodb", config=_TARGETS_CONFIG)
        self._table = DELIVERIES.table_name

    def machine_settings(self) -> str | None:
        found = self._client.get_item(
            TableName=self._table,
            Key={"delivery_id": {"S": SETTINGS_PK}, "sk": {"S": MACHINE_DETECTION_SK}},
            ProjectionExpression="#d",
            ExpressionAttributeNames={"#d": "document"},
        ).get("Item")
        if not found or "document" not in found:
            return None
        return str(found["document"]["S"])


class FallbackQueue:
    def __init__(self, url: str, client: Any = None) -> None:
        self._url = url
        self._client = client

    def send(self, item: dict[str, Any]) -> None:
        if self._client is None:  # created on first failure only: SQS is off the hot path
            self._client = boto3.client("sqs", config=_CONFIG)
        from functions.shared import fallback

        self._client.send_message(QueueUrl=self._url, MessageBody=fallback.encode(item))


class DynamoEventSink:
    def __init__(
        self,
        ttl_days: int,
        client: Any = None,
        fallback_queue: FallbackQueue | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client or boto3.client("dynamodb", config=_CONFIG)
        self._table = RAW_EVENTS.table_name
        self._ttl_days = ttl_days
        url = os.environ.get(FALLBACK_QUEUE_URL_ENV)
        self._fallback = fallback_queue or (FallbackQueue(url) if url else None)
        self._sleep = sleep

    def record(self, event: RawEvent) -> None:
        item = raw_events.to_item(event, self._ttl_days)
        error = self._put(item)
        if error is None:
            return
        if self._fallback is not None:
            try:
                self._fallback.send(item)
            except Exception:
                logger.exception("raw event lost: the fallback queue failed too")
            else:
                logger.warning("raw event handed to the fallback queue", extra={"error": _code(error)})
                metrics.add_metric(name=MetricNames.RAW_EVENT_FALLBACKS, unit="Count", value=1)
                return
        logger.error("raw event lost", extra={"error": _code(error), "delivery_id": event.delivery_id})
        metrics.add_metric(name=MetricNames.RAW_EVENT_WRITE_FAILURES, unit="Count", value=1)

    def _put(self, item: dict[str, Any]) -> Exception | None:
        """None once DynamoDB took the item, else the last error after PUT_ATTEMPTS tries."""
        last: Exception | None = None
        for attempt in range(PUT_ATTEMPTS):
            if attempt:
                # full jitter: spread retries of a throttled burst instead of synchronising them
                self._sleep(random.uniform(0, BACKOFF_BASE_SECONDS * 2**attempt))
            try:
                self._client.put_item(TableName=self._table, Item=item)
            except Exception as error:
                last = error
            else:
                return None
        return last


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or type(error).__name__)
