"""The raw-event item as the redirect function writes it, without PynamoDB on the hot path.

``RawEventModel`` in ``models.py`` reads the same items; ``tests/unit/test_raw_events.py`` proves the
two agree, so the attribute names still exist once in practice.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from functions.shared.tables import RAW_EVENT_SHARDS
from functions.shared.timeutil import iso


@dataclass(frozen=True)
class RawEvent:
    event_id: str
    kind: str  # click, open
    delivery_id: str
    recipient_id: str
    url_id: str | None
    at: datetime
    user_agent: str | None
    person_id: str | None
    ip: str | None
    proof: bool


def shard_of(event_id: str) -> str:
    """Spread events over RAW_EVENT_SHARDS partition keys so a campaign burst has no hot partition."""
    return f"{zlib.crc32(event_id.encode()) % RAW_EVENT_SHARDS:02d}"


def shards() -> list[str]:
    return [f"{n:02d}" for n in range(RAW_EVENT_SHARDS)]


def sort_key(at_iso: str, event_id: str) -> str:
    return f"{at_iso}#{event_id}"


def to_item(event: RawEvent, ttl_days: int) -> dict[str, dict[str, Any]]:
    """DynamoDB attribute values for PutItem."""
    at_iso = iso(event.at)
    item: dict[str, dict[str, Any]] = {
        "shard": {"S": shard_of(event.event_id)},
        "sk": {"S": sort_key(at_iso, event.event_id)},
        "event_id": {"S": event.event_id},
        "kind": {"S": event.kind},
        "delivery_id": {"S": event.delivery_id},
        "recipient_id": {"S": event.recipient_id},
        "at": {"S": at_iso},
        "proof": {"BOOL": event.proof},
        "expires_at": {"N": str(int((event.at + timedelta(days=ttl_days)).timestamp()))},
    }
    optional = {
        "url_id": event.url_id,
        "user_agent": event.user_agent,
        "person_id": event.person_id,
        "ip": event.ip,
    }
    for name, value in optional.items():
        if value:
            item[name] = {"S": value}
    return item
