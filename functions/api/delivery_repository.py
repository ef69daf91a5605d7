"""Where deliveries, their tracked URLs, rendered messages and send counts are kept.

``DeliveryRepository`` is what the deliveries logic needs; ``DynamoDeliveryRepository`` keeps it in
DynamoDB through the shared PynamoDB models; ``tests/fakes_deliveries.py`` keeps it in memory.

``sent`` and ``failed`` must stay exact however often a sending system retries, so each counter moves
only in the same transaction that creates (or flips) the message item it counts, guarded by a
condition on that item. A transaction holds at most 100 actions and never two on one item: up to 99
message writes plus the one update of the delivery's send counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.shared import models
from functions.shared.limits import MAX_SENT_DOMAINS

# One transaction: at most 99 message items + the send-counts item (DynamoDB allows 100 actions).
MESSAGES_PER_TRANSACTION = 99
# Each distinct email domain adds a ~45-character clause to the counts update; 50 of them keep the
# update expression well under DynamoDB's 4 KB limit.
DOMAINS_PER_TRANSACTION = 50
# Attempts per chunk: conflicts with a concurrent writer of the same counts item are retried.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class TrackedUrl:
    url_id: str
    url: str
    label: str
    category: str  # click, opt_out, mirror
    tracked: bool
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delivery:
    id: str
    label: str
    html: str
    text: str | None
    track_opens: bool
    track_clicks: bool
    exclude_url_patterns: tuple[str, ...]
    created_at: str
    url_parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def listing_key(self) -> str:
        """The newest-first listing's sort key: creation time, made unique by the id."""
        return f"{self.created_at}#{self.id}"


@dataclass(frozen=True)
class DeliverySummary:
    """A delivery as the listing shows it: no content, the number of URLs instead of the URLs."""

    id: str
    label: str
    track_opens: bool
    track_clicks: bool
    created_at: str
    url_count: int

    @property
    def listing_key(self) -> str:
        return f"{self.created_at}#{self.id}"


@dataclass(frozen=True)
class SentMessage:
    """A message rendered for real (not a proof): what ``sent`` counts, once per recipient."""

    recipient_id: str
    email_domain: str | None
    rendered_at: str


@dataclass(frozen=True)
class RecipientEmail:
    """The address a non-proof message was rendered for: kept for the opt-out feed alone."""

    recipient_id: str
    email: str
    rendered_at: str


@dataclass(frozen=True)
class SendCounts:
    sent: int = 0
    failed: int = 0
    domains: Mapping[str, int] = field(default_factory=dict)
    other_domains: int = 0  # messages to domains beyond the first limits.MAX_SENT_DOMAINS


@dataclass(frozen=True)
class FailureReport:
    failed: int  # messages newly counted as not delivered
    already_failed: tuple[str, ...]
    unknown: tuple[str, ...]  # recipients the delivery never sent a message to


@dataclass(frozen=True)
class UrlTrackingRules:
    """Account-wide patterns (fnmatch globs on the full URL) applied when a delivery is registered."""

    never_track: tuple[str, ...] = ()
    always_track: tuple[str, ...] = ()


class DeliveryRepository(Protocol):
    def add(self, delivery: Delivery, urls: Sequence[TrackedUrl]) -> None:
        """Store a new delivery, its tracked URLs and zeroed send counts."""

    def get(self, delivery_id: str) -> Delivery | None: ...

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]:
        """The delivery's tracked URLs in url-id order ("1", "2", ...)."""

    def newest(self, limit: int, before: str | None = None) -> list[DeliverySummary]:
        """Up to ``limit`` deliveries, newest first, whose listing key sorts before ``before``."""

    def record_messages(self, delivery_id: str, messages: Sequence[SentMessage]) -> int:
        """Record messages not recorded before and count them as sent; returns how many were new.

        ``messages`` holds distinct recipients.
        """

    def record_emails(self, delivery_id: str, emails: Sequence[RecipientEmail]) -> None:
        """Keep each recipient's address for this delivery (the latest rendering's), for the opt-out
        feed; idempotent."""

    def mark_failed(self, delivery_id: str, recipient_ids: Sequence[str]) -> FailureReport:
        """Count recorded messages as not delivered, each at most once. ``recipient_ids`` are distinct."""

    def send_counts(self, delivery_id: str) -> SendCounts: ...

    def update_url(self, delivery_id: str, url: TrackedUrl) -> None:
        """Store a tracked URL's new ``tracked``, ``label`` and ``category``."""

    def delete(self, delivery_id: str, deleted_at: str) -> None:
        """Hide the delivery from every read and listing; mark its tracked URLs gone (not counted)."""

    def url_tracking_rules(self) -> UrlTrackingRules: ...

    def save_url_tracking_rules(self, rules: UrlTrackingRules, updated_at: str) -> None: ...

    def machine_settings_document(self) -> str | None:
        """The stored machine-detection settings (JSON, ``machine_detection.stored_document``), or None."""

    def save_machine_settings_document(self, document: str, updated_at: str) -> None: ...


def chunks_for_transactions(messages: Sequence[SentMessage]) -> list[list[SentMessage]]:
    """Split messages so each chunk fits one transaction: ≤ 99 messages and ≤ 50 distinct domains."""
    result: list[list[SentMessage]] = []
    current: list[SentMessage] = []
    domains: set[str] = set()
    for message in messages:
        new_domain = message.email_domain is not None and message.email_domain not in domains
        if len(current) == MESSAGES_PER_TRANSACTION or (
            new_domain and len(domains) == DOMAINS_PER_TRANSACTION
        ):
            result.append(current)
            current, domains = [], set()
        current.append(message)
        if message.email_domain is not None:
            domains.add(message.email_domain)
    if current:
        result.append(current)
    return result


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DynamoDeliveryRepository:
    """The deliveries table (deliveries, messages, send counts) and the tracked-URLs table."""

    def add(self, delivery: Delivery, urls: Sequence[TrackedUrl]) -> None:
        models.SendCountsModel(delivery_id=delivery.id, sent=0, failed=0, domains={}).save()
        with models.TrackedUrlModel.batch_write() as batch:  # sends 25 items per request
            for url in urls:
                batch.save(
                    models.TrackedUrlModel(
                        delivery_id=delivery.id,
                        url_id=url.url_id,
                        url=url.url,
                        label=url.label,
                        category=url.category,
                        tracked=url.tracked,
                        fields=list(url.fields),
                    )
                )
        # Written last: a delivery becomes visible only once its URLs and counts exist.
        models.DeliveryModel(
            delivery_id=delivery.id,
            created=delivery.listing_key,
            created_at=delivery.created_at,
            label=delivery.label,
            html=delivery.html,
            text=delivery.text,
            track_opens=delivery.track_opens,
            track_clicks=delivery.track_clicks,
            exclude_url_patterns=list(delivery.exclude_url_patterns),
            url_count=len(urls),
            url_parameters=dict(delivery.url_parameters) or None,
        ).save()

    def get(self, delivery_id: str) -> Delivery | None:
        try:
            item = models.DeliveryModel.get(delivery_id, models.DELIVERY_SK)
        except models.DeliveryModel.DoesNotExist:
            return None
        if item.deleted_at:
            return None
        return Delivery(
            id=item.delivery_id,
            label=item.label,
            html=item.html,
            text=item.text,
            track_opens=bool(item.track_opens),
            track_clicks=bool(item.track_clicks),
            exclude_url_patterns=tuple(str(p) for p in item.exclude_url_patterns or ()),
            created_at=item.created_at,
            url_parameters={
                str(k): str(v)
                for k, v in (item.url_parameters.as_dict() if item.url_parameters else {}).items()
            },
        )

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]:
        urls = [
            TrackedUrl(
                url_id=item.url_id,
                url=item.url,
                label=item.label,
                category=item.category,
                tracked=bool(item.tracked),
                fields=tuple(str(f) for f in item.fields or ()),
            )
            for item in models.TrackedUrlModel.query(delivery_id)
        ]
        # The table sorts url ids as text ("10" before "2"); the API shows them in number order.
        return sorted(urls, key=lambda url: (len(url.url_id), url.url_id))

    def newest(self, limit: int, before: str | None = None) -> list[DeliverySummary]:
        start_key = None
        if before is not None:
            start_key = {
                "kind": {"S": "delivery"},
                "created": {"S": before},
                "delivery_id": {"S": before.rpartition("#")[2]},
                "sk": {"S": models.DELIVERY_SK},
            }
        items = models.DeliveryModel.by_created.query(
            "delivery",
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start_key,
            # The content can be 350 KB per delivery: the listing never reads it.
            attributes_to_get=[
                "delivery_id",
                "label",
                "track_opens",
                "track_clicks",
                "created_at",
                "url_count",
            ],
        )
        return [
            DeliverySummary(
                id=item.delivery_id,
                label=item.label,
                track_opens=bool(item.track_opens),
                track_clicks=bool(item.track_clicks),
                created_at=item.created_at,
                url_count=int(item.url_count or 0),
            )
            for item in items
        ]

    def record_messages(self, delivery_id: str, messages: Sequence[SentMessage]) -> int:
        named = self._named_domains(delivery_id)
        return sum(
            self._record_chunk(delivery_id, chunk, named) for chunk in chunks_for_transactions(messages)
        )

    def record_emails(self, delivery_id: str, emails: Sequence[RecipientEmail]) -> None:
        # BatchWriteItem, 25 puts a request (pynamodb's batch_write): puts, so a retry changes nothing.
        with models.RecipientEmailModel.batch_write() as batch:
            for entry in emails:
                batch.save(
                    models.RecipientEmailModel(
                        delivery_id=models.EMAIL_PREFIX + entry.recipient_id,
                        sk=delivery_id,
                        email=entry.email,
                        rendered_at=entry.rendered_at,
                    )
                )

    def _named_domains(self, delivery_id: str) -> set[str]:
        """The email domains the delivery's send counts name (at most MAX_SENT_DOMAINS)."""
        try:
            item = models.SendCountsModel.get(
                delivery_id, models.SENDS_SK, consistent_read=True, attributes_to_get=["domains"]
            )
        except models.SendCountsModel.DoesNotExist:
            return set()
        return set(item.domains.as_dict()) if item.domains else set()

    def _record_chunk(self, delivery_id: str, chunk: Sequence[SentMessage], named: set[str]) -> int:
        """Record a chunk's messages and count them in one transaction. The counts name the first
        MAX_SENT_DOMAINS domains and count the others' messages apart, so the item stays bounded
        (limits.py) whatever the addresses; a condition keeps a concurrent writer from naming more."""
        from pynamodb.expressions.condition import size
        from pynamodb.transactions import TransactWrite

        counts = models.SendCountsModel
        pending = list(chunk)
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                return 0
            domains = Counter(m.email_domain for m in pending if m.email_domain is not None)
            new = [domain for domain in domains if domain not in named][
                : max(0, MAX_SENT_DOMAINS - len(named))
            ]
            actions: list[Any] = [counts.sent.add(len(pending))]
            others = 0
            for domain, count in domains.items():
                if domain not in named and domain not in new:
                    others += count
                    continue
                path = counts.domains[domain]
                actions.append(path.set((path | 0) + count))
            if others:
                actions.append(counts.other_domains.add(others))
            room = (
                counts.domains.does_not_exist() | (size(counts.domains) <= MAX_SENT_DOMAINS - len(new))
                if new
                else None
            )
            try:
                with TransactWrite(connection=_connection()) as transaction:
                    for message in pending:
                        transaction.save(
                            models.MessageModel(
                                delivery_id=delivery_id,
                                sk=models.MESSAGE_PREFIX + message.recipient_id,
                                recipient_id=message.recipient_id,
                                email_domain=message.email_domain,
                                failed=False,
                                rendered_at=message.rendered_at,
                            ),
                            condition=models.MessageModel.sk.does_not_exist(),
                        )
                    transaction.update(
                        models.SendCountsModel(delivery_id=delivery_id), actions=actions, condition=room
                    )
                named.update(new)
                return len(pending)
            except Exception as error:
                codes = _cancellation_codes(error)
                if _counts_refused(error):
                    # Another writer named domains meanwhile: see which, and name fewer.
                    named.clear()
                    named.update(self._named_domains(delivery_id))
                elif "ConditionalCheckFailed" in codes:
                    # Some messages were recorded by an earlier call: count only the others.
                    known = self._messages(delivery_id, [m.recipient_id for m in pending])
                    pending = [m for m in pending if m.recipient_id not in known]
                elif codes & _RETRYABLE:
                    _back_off(attempt)
                else:
                    raise
        raise RuntimeError(f"recording messages of delivery {delivery_id} kept conflicting; try again")

    def mark_failed(self, delivery_id: str, recipient_ids: Sequence[str]) -> FailureReport:
        failed = 0
        already_failed: list[str] = []
        unknown: list[str] = []
        for batch in _batches(recipient_ids, MESSAGES_PER_TRANSACTION):
            newly, already, missing = self._fail_chunk(delivery_id, batch)
            failed += newly
            already_failed += already
            unknown += missing
        return FailureReport(failed, tuple(already_failed), tuple(unknown))

    def _fail_chunk(self, delivery_id: str, recipient_ids: Sequence[str]) -> tuple[int, list[str], list[str]]:
        from pynamodb.transactions import TransactWrite

        for attempt in range(MAX_ATTEMPTS):
            known = self._messages(delivery_id, recipient_ids)
            unknown = [r for r in recipient_ids if r not in known]
            already = [r for r in recipient_ids if known.get(r)]
            pending = [r for r in recipient_ids if known.get(r) is False]
            if not pending:
                return 0, already, unknown
            try:
                with TransactWrite(connection=_connection()) as transaction:
                    for recipient_id in pending:
                        transaction.update(
                            models.MessageModel(
                                delivery_id=delivery_id, sk=models.MESSAGE_PREFIX + recipient_id
                            ),
                            actions=[models.MessageModel.failed.set(True)],
                            condition=models.MessageModel.sk.exists() & (models.MessageModel.failed == False),  # noqa: E712
                        )
                    transaction.update(
                        models.SendCountsModel(delivery_id=delivery_id),
                        actions=[models.SendCountsModel.failed.add(len(pending))],
                    )
                return len(pending), already, unknown
            except Exception as error:
                codes = _cancellation_codes(error)
                if "ConditionalCheckFailed" in codes:
                    continue  # another call marked some of them meanwhile: read again
                if codes & _RETRYABLE:
                    _back_off(attempt)
                else:
                    raise
        raise RuntimeError(f"reporting failures of delivery {delivery_id} kept conflicting; try again")

    def _messages(self, delivery_id: str, recipient_ids: Sequence[str]) -> dict[str, bool]:
        """Recorded messages among ``recipient_ids``: recipient id -> failed."""
        keys = [(delivery_id, models.MESSAGE_PREFIX + r) for r in recipient_ids]
        return {
            item.recipient_id: bool(item.failed)
            for item in models.MessageModel.batch_get(
                keys, consistent_read=True, attributes_to_get=["recipient_id", "failed"]
            )
        }

    def send_counts(self, delivery_id: str) -> SendCounts:
        try:
            item = models.SendCountsModel.get(delivery_id, models.SENDS_SK, consistent_read=True)
        except models.SendCountsModel.DoesNotExist:
            return SendCounts()
        domains = {str(k): int(v) for k, v in (item.domains.as_dict() if item.domains else {}).items()}
        return SendCounts(
            sent=int(item.sent or 0),
            failed=int(item.failed or 0),
            domains=domains,
            other_domains=int(item.other_domains or 0),
        )

    def update_url(self, delivery_id: str, url: TrackedUrl) -> None:
        models.TrackedUrlModel(delivery_id=delivery_id, url_id=url.url_id).update(
            actions=[
                models.TrackedUrlModel.tracked.set(url.tracked),
                models.TrackedUrlModel.label.set(url.label),
                models.TrackedUrlModel.category.set(url.category),
            ],
            condition=models.TrackedUrlModel.url_id.exists(),
        )

    def delete(self, delivery_id: str, deleted_at: str) -> None:
        # URLs first: should this stop half-way, the delivery is still there to delete again.
        for url in models.TrackedUrlModel.query(delivery_id, attributes_to_get=["delivery_id", "url_id"]):
            models.TrackedUrlModel(delivery_id=delivery_id, url_id=url.url_id).update(
                actions=[
                    models.TrackedUrlModel.deleted_at.set(deleted_at),
                    models.TrackedUrlModel.tracked.set(False),
                ]
            )
        # Without ``kind`` the item leaves the listing index; ``deleted_at`` hides it from reads.
        models.DeliveryModel(delivery_id=delivery_id, sk=models.DELIVERY_SK).update(
            actions=[models.DeliveryModel.deleted_at.set(deleted_at), models.DeliveryModel.kind.remove()],
            condition=models.DeliveryModel.sk.exists(),
        )

    def url_tracking_rules(self) -> UrlTrackingRules:
        try:
            item = models.UrlTrackingSettingsModel.get(models.SETTINGS_PK, models.URL_TRACKING_SK)
        except models.UrlTrackingSettingsModel.DoesNotExist:
            return UrlTrackingRules()
        return UrlTrackingRules(
            never_track=tuple(str(p) for p in item.never_track or ()),
            always_track=tuple(str(p) for p in item.always_track or ()),
        )

    def save_url_tracking_rules(self, rules: UrlTrackingRules, updated_at: str) -> None:
        models.UrlTrackingSettingsModel(
            never_track=list(rules.never_track),
            always_track=list(rules.always_track),
            updated_at=updated_at,
        ).save()

    def machine_settings_document(self) -> str | None:
        try:
            item = models.MachineDetectionSettingsModel.get(models.SETTINGS_PK, models.MACHINE_DETECTION_SK)
        except models.MachineDetectionSettingsModel.DoesNotExist:
            return None
        return str(item.document)

    def save_machine_settings_document(self, document: str, updated_at: str) -> None:
        models.MachineDetectionSettingsModel(document=document, updated_at=updated_at).save()


_RETRYABLE = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def _cancellation_codes(error: Exception) -> set[str]:
    """The reasons DynamoDB gave for cancelling a transaction; empty for any other error."""
    from pynamodb.exceptions import TransactWriteError

    if (
        not isinstance(error, TransactWriteError)
        or error.cause_response_code != "TransactionCanceledException"
    ):
        return set()
    return {reason.code for reason in error.cancellation_reasons if reason is not None}


def _counts_refused(error: Exception) -> bool:
    """Whether a transaction was cancelled by the send-counts update's own condition (its last action)."""
    from pynamodb.exceptions import TransactWriteError

    if not isinstance(error, TransactWriteError) or not error.cancellation_reasons:
        return False
    last = error.cancellation_reasons[-1]
    return last is not None and last.code == "ConditionalCheckFailed"


def _back_off(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 1.0))


def _connection() -> Any:
    # The models' own connection (and botocore client), so transactions share its lifecycle.
    return models.MessageModel._get_connection().connection


_repository: DeliveryRepository | None = None


def repository() -> DeliveryRepository:
    """The container's repository: DynamoDB unless ``use`` installed another (tests)."""
    global _repository  # one per container
    if _repository is None:
        _repository = DynamoDeliveryRepository()
    return _repository


def use(replacement: DeliveryRepository | None) -> None:
    """Install a repository (an in-memory fake in tests); None restores the DynamoDB one."""
    global _repository
    _repository = replacement
