"""Events out: each new raw event, as its LOG, onto the ``msgtrack`` EventBridge bus and into one
webhook delivery per subscribed webhook, once its honeypot burst window has passed.

Fed by the raw-events table's DynamoDB stream (in AWS an event source mapping, locally the local
stack's stream poller): the stream function holds each batch's hits on the held-events queue, one
message per message (delivery + recipient), delayed by the burst window (``hold``). When the delay has
passed, the held-events function judges the hits against every honeypot hit of their message recorded
within the window, from whichever batch (one Query of the message's raw-events shard), and publishes
them (``publish_held``). At least once: a batch or held message that fails is retried whole, so a
consumer may see an event twice (``event_id`` tells them apart).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from functions.events.log import LinkInfo, Links, log_of
from functions.events.messages import Delivery
from functions.shared import timeutil
from functions.shared.machine import BURST_REASON, DEFAULT_BURST_SECONDS, SCANNER
from functions.shared.webhooks import WebhookRepository

WEB_KINDS = frozenset({"page", "transaction"})  # hits of the web-tracking tag: no honeypot burst

# The stream's batching window (the event source mapping's, and the local stack's).
BATCHING_WINDOW_SECONDS = 3
# A held hit is published this long after the burst window: the batching window and the stream's lag,
# so that every honeypot hit of the window is recorded and readable when the hit is judged.
HOLD_MARGIN_SECONDS = 5
MAX_HELD_EVENTS = 50  # hits of one message per held message: far below SQS's 256 KiB


class EventBus(Protocol):
    def put(self, logs: Sequence[Mapping[str, Any]]) -> None:
        """Put each LOG on the bus (``detail-type`` = its type); raises unless every one was put."""
        ...


class DeliveryQueue(Protocol):
    def send(self, deliveries: Sequence[tuple[Delivery, int]]) -> None:
        """Queue each delivery, visible after its delay in seconds (at most 900); raises on failure."""
        ...

    def dead_letter(self, delivery: Delivery) -> None:
        """Keep a delivery given up on, for an operator to inspect or replay."""
        ...


class HoldQueue(Protocol):
    def hold(self, held: Sequence[Held], delay_seconds: int) -> None:
        """Queue each held message, visible after the delay (at most 900 s); raises on failure."""
        ...


class HoneypotHits(Protocol):
    def honeypot_hits(
        self, delivery_id: str, recipient_id: str, start: datetime, end: datetime
    ) -> list[Mapping[str, Any]]:
        """The honeypot hits of one message recorded from ``start`` to ``end`` (raw events, plain values)."""
        ...


@dataclass(frozen=True)
class Held:
    """Hits of one message (delivery + recipient) from one stream batch, waiting for their burst window."""

    burst_seconds: int  # the machine-detection window in force when they were held
    events: list[dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps(
            {"burst_seconds": self.burst_seconds, "events": self.events},
            separators=(",", ":"),
            default=_plain,
        )

    @classmethod
    def from_json(cls, text: str) -> Held:
        document = json.loads(text)
        return cls(int(document["burst_seconds"]), [dict(event) for event in document["events"]])


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):  # a stream image's numbers (burst_seconds, expires_at)
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Published:
    events: int
    deliveries: int


def new_raw_events(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw-event items a DynamoDB stream batch inserted, as plain values (TTL removals, erasures
    and rewrites are not new hits)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    found = []
    for record in records:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") != "INSERT" or not image:
            continue
        found.append({name: deserializer.deserialize(value) for name, value in image.items()})
    return found


def hold(raw_events: Sequence[Mapping[str, Any]], *, queue: HoldQueue, burst_seconds: int) -> int:
    """Hold a stream batch's hits, grouped by message, until their burst window (and the margin) has
    passed; the number of hits held. Raises if the queue refused any (the stream retries the batch)."""
    by_message: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for raw in raw_events:
        by_message.setdefault((str(raw["delivery_id"]), str(raw["recipient_id"])), []).append(dict(raw))
    held = [
        Held(burst_seconds, hits[start : start + MAX_HELD_EVENTS])
        for hits in by_message.values()
        for start in range(0, len(hits), MAX_HELD_EVENTS)
    ]
    if held:
        queue.hold(held, burst_seconds + HOLD_MARGIN_SECONDS)
    return sum(len(message.events) for message in held)


def publish_held(
    held: Held,
    *,
    honeypots: HoneypotHits,
    links: Links,
    bus: EventBus,
    queue: DeliveryQueue,
    webhooks: WebhookRepository,
    now: datetime | None = None,
) -> Published:
    """Judge a held message's hits against the honeypot hits of their message within the burst window
    (one read), then publish them."""
    if not held.events:
        return Published(0, 0)
    first = held.events[0]
    times = [timeutil.parse(str(raw["at"])) for raw in held.events]
    window = timedelta(seconds=held.burst_seconds)
    found = honeypots.honeypot_hits(
        str(first["delivery_id"]), str(first["recipient_id"]), min(times) - window, max(times) + window
    )
    return publish(
        held.events, links=links, bus=bus, queue=queue, webhooks=webhooks, now=now, honeypots=found
    )


def publish(
    raw_events: Sequence[Mapping[str, Any]],
    *,
    links: Links,
    bus: EventBus,
    queue: DeliveryQueue,
    webhooks: WebhookRepository,
    now: datetime | None = None,
    honeypots: Sequence[Mapping[str, Any]] = (),
) -> Published:
    """Put every raw event on the bus and queue its webhook deliveries; raises if either failed. A hit
    in the burst of one of ``honeypots`` (or of a honeypot hit among the events) goes as a scanner's."""
    if not raw_events:
        return Published(0, 0)
    logs = with_honeypot_bursts(raw_events, [log_of(raw, _link(raw, links)) for raw in raw_events], honeypots)
    bus.put(logs)
    queued_at = timeutil.iso(now or timeutil.now())
    deliveries = [
        (Delivery(hook.id, log, queued_at), 0)
        for hook in webhooks.all()
        for log in logs
        if log["type"] in hook.events
    ]
    if deliveries:
        queue.send(deliveries)
    return Published(len(logs), len(deliveries))


def _link(raw: Mapping[str, Any], links: Links) -> LinkInfo | None:
    url_id = raw.get("url_id")
    if raw.get("kind") != "click" or not url_id:
        return None
    return links.link(str(raw["delivery_id"]), str(url_id))


def with_honeypot_bursts(
    raw_events: Sequence[Mapping[str, Any]],
    logs: list[dict[str, Any]],
    honeypots: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The LOGs with the honeypot rule applied as the tracking workflow applies it
    (``functions/consolidate/batch.py``): a counted email hit from the same client as a honeypot hit
    (not a proof) on the same message, within that honeypot hit's burst window, is a ``scanner`` hit
    with the workflow's reason."""
    windows: dict[tuple[str, str, str], list[tuple[datetime, float]]] = {}
    seen: set[str] = set()
    for raw in (*honeypots, *raw_events):
        if not raw.get("honeypot") or raw.get("proof") or not raw.get("client_key"):
            continue
        if str(raw["event_id"]) in seen:
            continue
        seen.add(str(raw["event_id"]))
        burst = raw.get("burst_seconds")
        key = (str(raw["delivery_id"]), str(raw["recipient_id"]), str(raw["client_key"]))
        windows.setdefault(key, []).append(
            (timeutil.parse(str(raw["at"])), float(burst if burst is not None else DEFAULT_BURST_SECONDS))
        )
    if not windows:
        return logs
    for position, raw in enumerate(raw_events):
        if raw.get("honeypot") or raw.get("proof") or raw.get("kind") in WEB_KINDS:
            continue
        if logs[position].get("machine") == SCANNER:
            continue
        key = (str(raw["delivery_id"]), str(raw["recipient_id"]), str(raw.get("client_key")))
        around = windows.get(key) if raw.get("client_key") else None
        if not around:
            continue
        at = timeutil.parse(str(raw["at"]))
        if any(abs((at - centre).total_seconds()) <= width for centre, width in around):
            logs[position] = {**logs[position], "machine": SCANNER, "machine_reason": BURST_REASON}
    return logs
