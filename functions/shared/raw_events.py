"""The raw-event item as the redirect function writes it, without PynamoDB on the hot path.

``RawEventModel`` in ``models.py`` reads the same items; ``tests/unit/test_raw_events.py`` proves the
two agree, so the attribute names still exist once in practice.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

from functions.shared.limits import MAX_PAGE_URL_BYTES, MAX_USER_AGENT_BYTES, utf8_prefix
from functions.shared.records import Record
from functions.shared.settings import settings
from functions.shared.tables import LEGACY_RAW_EVENT_SHARDS
from functions.shared.timeutil import iso

# ``RawEvent.source`` of a one-click unsubscribe (RFC 8058, ``redirect/unsubscribe.py``): a click without
# a URL that the tracking workflow logs as an ``opt_out`` of the recipient.
ONE_CLICK = "one_click"


class RawEvent(Record):
    __slots__ = (
        "amount",
        "at",
        "burst_seconds",
        "client_key",
        "currency",
        "delivery_id",
        "event_id",
        "honeypot",
        "ip",
        "kind",
        "machine",
        "machine_reason",
        "page_url",
        "person_id",
        "proof",
        "recipient_id",
        "site_id",
        "source",
        "url_id",
        "user_agent",
        "via_url_id",
    )

    def __init__(
        self,
        event_id: str,
        kind: str,  # click, open, page, transaction
        delivery_id: str,
        recipient_id: str,
        url_id: str | None,
        at: datetime,
        user_agent: str | None,
        person_id: str | None,
        ip: str | None,
        proof: bool,
        # The web-tracking tag (kind page or transaction) only; see RawEventModel.
        site_id: str | None = None,
        via_url_id: str | None = None,
        page_url: str | None = None,
        amount: str | None = None,
        currency: str | None = None,
        # Machine traffic (functions/shared/machine.py): the redirect's verdict on the hit, a per-message
        # keyed hash of the client address (never the address), and whether it hit the honeypot link.
        machine: str | None = None,
        machine_reason: str | None = None,
        client_key: str | None = None,
        honeypot: bool = False,
        burst_seconds: int | None = None,  # honeypot hits: the burst window in force when recorded
        source: str | None = None,  # ONE_CLICK for a one-click unsubscribe; None for every other hit
    ) -> None:
        self.event_id = event_id
        self.kind = kind
        self.delivery_id = delivery_id
        self.recipient_id = recipient_id
        self.url_id = url_id
        self.at = at
        self.user_agent = user_agent
        self.person_id = person_id
        self.ip = ip
        self.proof = proof
        self.site_id = site_id
        self.via_url_id = via_url_id
        self.page_url = page_url
        self.amount = amount
        self.currency = currency
        self.machine = machine
        self.machine_reason = machine_reason
        self.client_key = client_key
        self.honeypot = honeypot
        self.burst_seconds = burst_seconds
        self.source = source


def shard_of(delivery_id: str, recipient_id: str, count: int | None = None) -> str:
    """The shard of a recipient's hits: one of ``count`` partition keys (the deploy-time setting).

    By recipient (the message), so that every hit a recipient's state or a honeypot burst (same
    message, same client address) ties together is read by one worker of the tracking workflow; a
    campaign's recipients spread evenly over the keys, each taking 1,000 writes a second.
    """
    count = count or settings().raw_event_shards
    return shard_name(zlib.crc32(f"{delivery_id}\x1f{recipient_id}".encode()) % count, count)


def shard_name(n: int, count: int) -> str:
    # The count is part of the name: after it changes, the old names are legacy shards, drained alone.
    return f"r{n:03d}of{count}"


def shards(count: int | None = None) -> list[str]:
    count = count or settings().raw_event_shards
    return [shard_name(n, count) for n in range(count)]


def legacy_shards() -> list[str]:
    """The shards of the event-id sharding this version replaced: read until they are drained."""
    return [f"{n:02d}" for n in range(LEGACY_RAW_EVENT_SHARDS)]


def sort_key(at_iso: str, event_id: str) -> str:
    return f"{at_iso}#{event_id}"


def to_item(event: RawEvent, ttl_days: int) -> dict[str, dict[str, Any]]:
    """DynamoDB attribute values for PutItem."""
    at_iso = iso(event.at)
    item: dict[str, dict[str, Any]] = {
        "shard": {"S": shard_of(event.delivery_id, event.recipient_id)},
        "sk": {"S": sort_key(at_iso, event.event_id)},
        "event_id": {"S": event.event_id},
        "kind": {"S": event.kind},
        "delivery_id": {"S": event.delivery_id},
        "recipient_id": {"S": event.recipient_id},
        "at": {"S": at_iso},
        "proof": {"BOOL": event.proof},
        # Whole days in seconds: the same second as ``(at + timedelta(days=ttl_days)).timestamp()``.
        "expires_at": {"N": str(int(event.at.timestamp()) + ttl_days * 86_400)},
    }
    optional = {
        "url_id": event.url_id,
        # What a hit says is cut by UTF-8 bytes here, where every raw event becomes an item (limits.py).
        "user_agent": utf8_prefix(event.user_agent, MAX_USER_AGENT_BYTES) if event.user_agent else None,
        "person_id": event.person_id,
        "ip": event.ip,
        "site_id": event.site_id,
        "via_url_id": event.via_url_id,
        "page_url": utf8_prefix(event.page_url, MAX_PAGE_URL_BYTES) if event.page_url else None,
        "amount": event.amount,
        "currency": event.currency,
        "machine": event.machine,
        "machine_reason": event.machine_reason,
        "client_key": event.client_key,
        "source": event.source,
    }
    for name, value in optional.items():
        if value:
            item[name] = {"S": value}
    if event.honeypot:
        item["honeypot"] = {"BOOL": True}
    if event.burst_seconds is not None:
        item["burst_seconds"] = {"N": str(event.burst_seconds)}
    return item
