"""In-memory stand-ins for the webhook repository, the event bus, the delivery queue and tracked URLs."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from functions.events.log import LinkInfo
from functions.events.messages import Delivery
from functions.events.publish import Held
from functions.shared.timeutil import parse
from functions.shared.webhooks import Webhook


@dataclass
class FakeWebhookRepository:
    hooks: dict[str, Webhook] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, webhook: Webhook) -> None:
        self.hooks[webhook.id] = webhook

    def all(self) -> list[Webhook]:
        return list(self.hooks.values())

    def get(self, webhook_id: str) -> Webhook | None:
        return self.hooks.get(webhook_id)

    def delete(self, webhook_id: str) -> None:
        self.hooks.pop(webhook_id, None)

    def _change(self, webhook_id: str, **changes: Any) -> None:
        with self.lock:
            hook = self.hooks.get(webhook_id)
            if hook is not None:  # a deleted webhook is not brought back
                self.hooks[webhook_id] = replace(hook, **changes)

    def record_failure(self, webhook_id: str, error: str, at: str) -> None:
        hook = self.hooks.get(webhook_id)
        since = hook.failing_since if hook and hook.failing_since else at
        self._change(webhook_id, last_error=error, last_error_at=at, failing_since=since)

    def record_recovery(self, webhook_id: str) -> None:
        self._change(webhook_id, failing_since=None)

    def record_dead_letter(self, webhook_id: str, error: str, at: str) -> None:
        hook = self.hooks.get(webhook_id)
        count = hook.dead_lettered + 1 if hook else 1
        self._change(webhook_id, dead_lettered=count, last_error=error, last_error_at=at)


@dataclass
class FakeBus:
    logs: list[Mapping[str, Any]] = field(default_factory=list)
    fail: bool = False

    def put(self, logs: Sequence[Mapping[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("the bus refused the events")
        self.logs.extend(logs)


@dataclass
class FakeQueue:
    """Messages with their delay; ``dead`` holds the dead letters."""

    messages: list[tuple[Delivery, int]] = field(default_factory=list)
    dead: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, deliveries: Sequence[tuple[Delivery, int]]) -> None:
        for _delivery, delay in deliveries:
            assert 0 <= delay <= 900, delay  # SQS's bounds
        with self.lock:
            self.messages.extend(deliveries)

    def dead_letter(self, delivery: Delivery) -> None:
        with self.lock:
            self.dead.append(delivery)

    def take(self) -> list[tuple[Delivery, int]]:
        with self.lock:
            taken, self.messages = self.messages, []
        return taken


@dataclass
class FakeLinks:
    links: dict[tuple[str, str], LinkInfo] = field(default_factory=dict)

    def link(self, delivery_id: str, url_id: str) -> LinkInfo | None:
        return self.links.get((delivery_id, url_id))


@dataclass
class FakeHoldQueue:
    """Held messages with their delay."""

    messages: list[tuple[Held, int]] = field(default_factory=list)

    def hold(self, held: Sequence[Held], delay_seconds: int) -> None:
        assert 0 <= delay_seconds <= 900, delay_seconds  # SQS's bounds
        self.messages.extend((message, delay_seconds) for message in held)

    def take(self) -> list[tuple[Held, int]]:
        taken, self.messages = self.messages, []
        return taken


@dataclass
class FakeRawEvents:
    """Recorded raw events (plain values, as the stream carries them); ``reads`` counts window reads."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    reads: int = 0

    def add(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.events.extend(events)

    def honeypot_hits(
        self, delivery_id: str, recipient_id: str, start: datetime, end: datetime
    ) -> list[Mapping[str, Any]]:
        self.reads += 1
        return [
            event
            for event in self.events
            if event.get("honeypot")
            and (event["delivery_id"], event["recipient_id"]) == (delivery_id, recipient_id)
            and start <= parse(str(event["at"])) <= end
        ]
