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
    item: dict[str, Any]  # DynamoDB attribute values of the raw-event item


def encode(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"))


def decode(receipt: str, body: str) -> FallbackMessage | None:
    """The message's raw-event item, or None for a body that is not one (logged and dropped)."""
    try:
        item = json.loads(body)
    except ValueError:
        return None
    if not isinstance(item, dict) or not {"shard", "sk", "event_id"} <= set(item):
        return None
    return FallbackMessage(receipt, item)
