"""An in-memory DeliveryRepository with the same promises as the DynamoDB one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from functions.api.delivery_repository import (
    Delivery,
    DeliverySummary,
    FailureReport,
    RecipientEmail,
    SendCounts,
    SentMessage,
    TrackedUrl,
    UrlTrackingRules,
)


@dataclass
class _Message:
    sent: SentMessage
    failed: bool = False


@dataclass
class FakeDeliveryRepository:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    urls: dict[str, list[TrackedUrl]] = field(default_factory=dict)
    messages: dict[str, dict[str, _Message]] = field(default_factory=dict)
    counts: dict[str, tuple[int, int, Counter[str]]] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)  # delivery id -> deleted at
    gone_urls: set[tuple[str, str]] = field(default_factory=set)
    rules: UrlTrackingRules = field(default_factory=UrlTrackingRules)
    machine_document: str | None = None
    emails: dict[tuple[str, str], RecipientEmail] = field(default_factory=dict)  # (recipient, delivery)

    def add(self, delivery: Delivery, urls: Sequence[TrackedUrl]) -> None:
        assert delivery.id not in self.deliveries, "delivery ids are unique"
        self.deliveries[delivery.id] = delivery
        self.urls[delivery.id] = list(urls)
        self.messages[delivery.id] = {}
        self.counts[delivery.id] = (0, 0, Counter())

    def get(self, delivery_id: str) -> Delivery | None:
        return None if delivery_id in self.deleted else self.deliveries.get(delivery_id)

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]:
        return sorted(self.urls.get(delivery_id, []), key=lambda url: int(url.url_id))

    def newest(self, limit: int, before: str | None = None) -> list[DeliverySummary]:
        ordered = sorted(
            (d for d in self.deliveries.values() if d.id not in self.deleted),
            key=lambda d: d.listing_key,
            reverse=True,
        )
        if before is not None:
            ordered = [d for d in ordered if d.listing_key < before]
        return [
            DeliverySummary(d.id, d.label, d.track_opens, d.track_clicks, d.created_at, len(self.urls[d.id]))
            for d in ordered[:limit]
        ]

    def record_messages(self, delivery_id: str, messages: Sequence[SentMessage]) -> int:
        assert len({m.recipient_id for m in messages}) == len(messages), "recipients are distinct"
        recorded = self.messages.setdefault(delivery_id, {})
        sent, failed, domains = self.counts.setdefault(delivery_id, (0, 0, Counter()))
        new = [m for m in messages if m.recipient_id not in recorded]
        for message in new:
            recorded[message.recipient_id] = _Message(message)
            if message.email_domain is not None:
                domains[message.email_domain] += 1
        self.counts[delivery_id] = (sent + len(new), failed, domains)
        return len(new)

    def record_emails(self, delivery_id: str, emails: Sequence[RecipientEmail]) -> None:
        for entry in emails:
            self.emails[(entry.recipient_id, delivery_id)] = entry

    def mark_failed(self, delivery_id: str, recipient_ids: Sequence[str]) -> FailureReport:
        assert len(set(recipient_ids)) == len(recipient_ids), "recipients are distinct"
        recorded = self.messages.get(delivery_id, {})
        unknown = tuple(r for r in recipient_ids if r not in recorded)
        already = tuple(r for r in recipient_ids if r in recorded and recorded[r].failed)
        newly = [r for r in recipient_ids if r in recorded and not recorded[r].failed]
        for recipient_id in newly:
            recorded[recipient_id].failed = True
        sent, failed, domains = self.counts.setdefault(delivery_id, (0, 0, Counter()))
        self.counts[delivery_id] = (sent, failed + len(newly), domains)
        return FailureReport(len(newly), already, unknown)

    def send_counts(self, delivery_id: str) -> SendCounts:
        sent, failed, domains = self.counts.get(delivery_id, (0, 0, Counter()))
        return SendCounts(sent, failed, dict(domains))

    def update_url(self, delivery_id: str, url: TrackedUrl) -> None:
        urls = self.urls[delivery_id]
        index = next(i for i, known in enumerate(urls) if known.url_id == url.url_id)
        urls[index] = replace(urls[index], tracked=url.tracked, label=url.label, category=url.category)

    def delete(self, delivery_id: str, deleted_at: str) -> None:
        assert delivery_id in self.deliveries
        self.deleted[delivery_id] = deleted_at
        self.urls[delivery_id] = [replace(url, tracked=False) for url in self.urls[delivery_id]]
        self.gone_urls |= {(delivery_id, url.url_id) for url in self.urls[delivery_id]}

    def url_tracking_rules(self) -> UrlTrackingRules:
        return self.rules

    def save_url_tracking_rules(self, rules: UrlTrackingRules, updated_at: str) -> None:
        self.rules = rules

    def machine_settings_document(self) -> str | None:
        return self.machine_document

    def save_machine_settings_document(self, document: str, updated_at: str) -> None:
        self.machine_document = document
