"""Webhook delivery: sign a LOG the Standard Webhooks way and POST it; retry with exponential backoff
while the receiver fails, for 24 hours, then dead-letter it and say so on the webhook.

Each delivery message names one webhook and one event. The URL is checked again before each attempt
(its DNS may have changed since registration) and the request goes to the address checked
(``functions/shared/egress.py``); a redirect is a failure, never followed. A retry is a new message on
the delivery queue, delayed by the backoff (longer delays than SQS's 15 minutes are waited out by
sending the message on again until it is due), so a failing receiver holds no worker between its
attempts; attempts run concurrently, each bounded by its timeout, so a slow or dead receiver delays
no other webhook.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.events.messages import Delivery
from functions.events.publish import DeliveryQueue
from functions.shared import egress, timeutil, webhooks
from functions.shared.webhooks import WebhookRepository

RETRY_FOR = timedelta(hours=24)
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 3600
MAX_QUEUE_DELAY_SECONDS = 900  # SQS's longest DelaySeconds
TIMEOUT_SECONDS = 5.0
USER_AGENT = "msgtrack-webhooks/1"

Sender = Callable[[egress.Target, bytes, Mapping[str, str], float], egress.Answer]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered, retrying, dead_lettered, waiting (not due yet), dropped (webhook gone)
    error: str | None = None


@dataclass(frozen=True)
class Deliverer:
    webhooks: WebhookRepository
    queue: DeliveryQueue
    key: bytes
    policy: egress.EgressPolicy
    clock: Clock = timeutil.now
    sender: Sender = egress.post
    resolver: egress.Resolver = egress.system_resolver
    timeout: float = TIMEOUT_SECONDS


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt ``attempt`` (1-based): 5 s doubling, at most an hour."""
    return int(min(FIRST_RETRY_SECONDS * 2 ** min(attempt - 1, 30), MAX_RETRY_SECONDS))


def signed_request(delivery: Delivery, secret: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers of one attempt."""
    from standardwebhooks.webhooks import Webhook as Signer

    body = json.dumps(delivery.log, separators=(",", ":"), ensure_ascii=False).encode()
    signature = Signer(secret).sign(delivery.event_id, at, body)
    return body, {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def deliver(delivery: Delivery, deliverer: Deliverer) -> Outcome:
    """One attempt of one delivery, and what follows from it (a retry queued, or the dead letter)."""
    now = deliverer.clock()
    if delivery.due_at is not None:
        wait = (timeutil.parse(delivery.due_at) - now).total_seconds()
        if wait > 0:
            deliverer.queue.send([(delivery, min(math.ceil(wait), MAX_QUEUE_DELAY_SECONDS))])
            return Outcome("waiting")
    hook = deliverer.webhooks.get(delivery.webhook_id)
    if hook is None or delivery.type not in hook.events:
        return Outcome("dropped")
    try:
        target = egress.resolve(hook.url, deliverer.policy, deliverer.resolver)
    except egress.RefusedUrl as refused:
        answer = egress.Answer(None, f"refused: {refused.message}", 0.0)
    else:
        secret = webhooks.secret_of(hook.id, hook.salt, deliverer.key)
        body, headers = signed_request(delivery, secret, now)
        answer = deliverer.sender(target, body, headers, deliverer.timeout)
    if answer.ok:
        if hook.failing_since is not None:
            deliverer.webhooks.record_recovery(hook.id)
        return Outcome("delivered")
    error = answer.error or "failed"
    at = deliverer.clock()
    deliverer.webhooks.record_failure(hook.id, error, timeutil.iso(at))
    deadline = timeutil.parse(delivery.first_queued_at) + RETRY_FOR
    if at >= deadline:
        deliverer.queue.dead_letter(delivery.retry(timeutil.iso(at), error))
        deliverer.webhooks.record_dead_letter(hook.id, error, timeutil.iso(at))
        return Outcome("dead_lettered", error)
    due = min(at + timedelta(seconds=retry_delay(delivery.attempt)), deadline)
    delay = max(0, min(int((due - at).total_seconds()), MAX_QUEUE_DELAY_SECONDS))
    deliverer.queue.send([(delivery.retry(timeutil.iso(due), error), delay)])
    return Outcome("retrying", error)


def deliver_all(deliveries: Sequence[Delivery], deliverer: Deliverer, workers: int = 10) -> list[Outcome]:
    """Every delivery at once, each on its own thread: one slow receiver holds up only its own."""
    if len(deliveries) <= 1:
        return [_attempt(delivery, deliverer) for delivery in deliveries]
    with ThreadPoolExecutor(max_workers=min(workers, len(deliveries))) as pool:
        return list(pool.map(lambda delivery: _attempt(delivery, deliverer), deliveries))


def _attempt(delivery: Delivery, deliverer: Deliverer) -> Outcome:
    """``deliver``, with a failure of our own (the queue, the table) as an outcome: the message stays
    on the queue and comes back, while the rest of the batch is done."""
    try:
        return deliver(delivery, deliverer)
    except Exception as exc:
        return Outcome("unprocessed", f"{type(exc).__name__}: {exc}"[:300])
