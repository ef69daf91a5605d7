"""The durable fallback for raw events DynamoDB would not take: an SQS queue the workflow drains.

The message body is the raw-event item exactly as it would have been written (DynamoDB attribute
values as JSON), so draining it is one idempotent PutItem of the very same item. boto3 only: the
redirect function uses this module, but only on its failure path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

QUEUE_URL_ENV = "MSGTRACK_FALLBACK_QUEUE_URL"


def queue_url() -> str | None:
    return os.environ.get(QUEUE_URL_ENV) or None


@dataclass(frozen=True)
class FallbackMessage:
    receipt: str
    item: dict[str, Any]  # DynamoDB attribute values of the raw-event item; else {"body": {"S": body}}
    error: str | None = None  # why the body holds no raw-event item (the workflow quarantines it)


def encode(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"))


def decode(receipt: str, body: str) -> FallbackMessage:
    """The message's raw-event item, or for a body that is not one (truncated, not JSON, naming no
    key), the body itself and why."""
    try:
        item = json.loads(body)
    except ValueError:
        item = None
    if not isinstance(item, dict) or not {"shard", "sk", "event_id"} <= set(item):
        reason = (
            "the message body is not a raw-event item (JSON attribute values naming shard, sk and event_id)"
        )
        return FallbackMessage(receipt, {"body": {"S": body}}, reason)
    return FallbackMessage(receipt, item)
