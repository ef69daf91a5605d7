"""Deliveries: register one, list and read them, render its messages, report failed sends.

Each function takes its repository as an argument (default: the container's DynamoDB one), so the
unit tests hand it the in-memory fake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from functions.api import audit, cursors, machine_detection, url_options
from functions.api.delivery_repository import (
    Delivery,
    DeliveryRepository,
    DeliverySummary,
    FailureReport,
    RecipientEmail,
    SentMessage,
    TrackedUrl,
    repository,
)
from functions.api.errors import PayloadTooLarge
from functions.api.rendering import (
    MessageRenderer,
    Recipient,
    RenderedMessage,
    TrackedLink,
    validate_template,
)
from functions.api.sandbox import call_render_budget
from functions.shared import ids, timeutil
from functions.shared.errors import DeliveryNotFound, InvalidCursor, InvalidRequest
from functions.shared.limits import MAX_NAME_BYTES, utf8_prefix
from functions.shared.links import parse_content
from functions.shared.settings import settings
from functions.shared.tokens import Signer, signer

# A DynamoDB item holds at most 400 KB; the rest of the delivery item needs far less than 50 KB.
MAX_CONTENT_BYTES = 350_000
MAX_RECIPIENTS_PER_CALL = 1000
MAX_PAGE_SIZE = 200

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@dataclass(frozen=True)
class DeliveryDetails:
    delivery: Delivery
    urls: tuple[TrackedUrl, ...]


@dataclass(frozen=True)
class DeliveryPage:
    items: tuple[DeliverySummary, ...]
    next_cursor: str | None


def register(
    *,
    label: str,
    html: str,
    text: str | None = None,
    track_opens: bool = True,
    track_clicks: bool = True,
    exclude_url_patterns: Sequence[str] = (),
    url_parameters: Mapping[str, str] | None = None,
    actor: str = "system",
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> DeliveryDetails:
    """Find the links of a new delivery's content, number them in order and store it all.

    The account's URL tracking rules apply (``url_options.is_tracked``); ``url_parameters`` are
    appended to every tracked target. Raises PayloadTooLarge when the content cannot fit one DynamoDB
    item, InvalidContent when a link or the personalization cannot be used (e.g. a placeholder in a
    host).
    """
    size = len(html.encode()) + len(text.encode() if text else b"")
    if size > MAX_CONTENT_BYTES:
        raise PayloadTooLarge(
            f"html and text take {size} bytes together; a delivery holds at most {MAX_CONTENT_BYTES} bytes"
        )
    parameters = dict(url_parameters or {})
    if len(parameters) > url_options.MAX_URL_PARAMETERS:
        raise InvalidRequest(f"url_parameters holds at most {url_options.MAX_URL_PARAMETERS} parameters")
    repo = _or_default(repo)
    rules = repo.url_tracking_rules()
    # Parsed without patterns: a link not tracked here asked for it (data-track="none").
    content = parse_content(html, text)
    validate_template(html, text)
    urls = []
    for number, link in enumerate(content.links(), start=1):
        tracked = url_options.is_tracked(
            link.url, asked=link.tracked, exclude=exclude_url_patterns, rules=rules
        )
        urls.append(
            TrackedUrl(
                url_id=str(number),
                url=url_options.with_parameters(link.url, parameters) if tracked else link.url,
                label=link.label,
                category=link.category,
                tracked=tracked,
                fields=tuple(link.fields),
            )
        )
    delivery = Delivery(
        id=ids.delivery_id(),
        label=label,
        html=html,
        text=text,
        track_opens=track_opens,
        track_clicks=track_clicks,
        exclude_url_patterns=tuple(exclude_url_patterns),
        created_at=timeutil.iso(now or timeutil.now()),
        url_parameters=parameters,
    )
    repo.add(delivery, urls)
    audit.record(
        "delivery_created",
        f"delivery/{delivery.id}",
        actor=actor,
        after=_summary(delivery, urls),
        trail=trail,
        now=now,
    )
    return DeliveryDetails(delivery, tuple(urls))


def delete(
    delivery_id: str,
    *,
    actor: str = "system",
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> None:
    """Delete a delivery: gone from every report, listing and recipient Tracking tab.

    Its tracked URLs are marked gone rather than removed: links already sent answer a neutral page
    (the redirect tells a gone URL from a forged token), and the workflow counts no later hit.
    """
    repo = _or_default(repo)
    delivery = _existing(delivery_id, repo)
    urls = repo.tracked_urls(delivery_id)
    moment = now or timeutil.now()
    repo.delete(delivery_id, timeutil.iso(moment))
    audit.record(
        "delivery_deleted",
        f"delivery/{delivery_id}",
        actor=actor,
        before=_summary(delivery, urls),
        trail=trail,
        now=moment,
    )


def _summary(delivery: Delivery, urls: Sequence[TrackedUrl]) -> dict[str, object]:
    """What the audit trail keeps of a delivery: no content."""
    return {
        "label": delivery.label,
        "created_at": delivery.created_at,
        "track_opens": delivery.track_opens,
        "track_clicks": delivery.track_clicks,
        "url_count": len(urls),
        "tracked_urls": sum(1 for url in urls if url.tracked),
    }


def get(delivery_id: str, repo: DeliveryRepository | None = None) -> DeliveryDetails:
    repo = _or_default(repo)
    delivery = _existing(delivery_id, repo)
    return DeliveryDetails(delivery, tuple(repo.tracked_urls(delivery_id)))


def newest(
    limit: int = 50, cursor: str | None = None, repo: DeliveryRepository | None = None
) -> DeliveryPage:
    """One page of deliveries, newest first; ``next_cursor`` is None on the last page."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    position = cursors.decode(cursor)
    before = None
    if position is not None:
        before = position.get("before")
        if not isinstance(before, str):
            raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    # One more than asked tells whether another page exists without handing out an empty one.
    found = _or_default(repo).newest(limit + 1, before)
    items = tuple(found[:limit])
    next_cursor = cursors.encode({"before": items[-1].listing_key}) if len(found) > limit else None
    return DeliveryPage(items, next_cursor)


def render_messages(
    delivery_id: str,
    recipients: Sequence[Recipient],
    *,
    base_url: str,
    proof: bool = False,
    repo: DeliveryRepository | None = None,
    link_signer: Signer | None = None,
    now: datetime | None = None,
) -> list[RenderedMessage]:
    """Each recipient's message with tracked links and pixel; real (non-proof) ones count as sent.

    A recipient rendered again is counted once: what was already recorded is not counted again.
    """
    _check_batch("recipients", [r.id for r in recipients])
    repo = _or_default(repo)
    delivery = _existing(delivery_id, repo)
    content = parse_content(delivery.html, delivery.text)
    stored = {url.url_id: url for url in repo.tracked_urls(delivery_id)}
    # A link of the content is the tracked URL numbered as at registration (first-seen order): its
    # stored label, category or target (web-analytics parameters) may have changed since.
    links = [
        TrackedLink(
            url_id=url.url_id,
            url=link.url,
            label=link.label,
            category=link.category,
            tracked=url.tracked,
            fields=url.fields,
        )
        for number, link in enumerate(content.links(), start=1)
        if (url := stored.get(str(number))) is not None
    ]
    renderer = MessageRenderer(
        content,
        links,
        delivery_id=delivery_id,
        base_url=base_url,
        signer=link_signer or signer(),
        track_opens=delivery.track_opens,
        track_clicks=delivery.track_clicks,
        honeypot=(delivery.track_clicks or delivery.track_opens) and machine_detection.current(repo).honeypot,
        unsubscribe_mailto=settings().unsubscribe_mailto,
    )
    with call_render_budget():
        messages = [renderer.render(recipient, proof=proof) for recipient in recipients]
    if not proof:
        # Recorded only once every message rendered: a failing batch counts nothing.
        rendered_at = timeutil.iso(now or timeutil.now())
        repo.record_messages(
            delivery_id,
            [SentMessage(r.id, email_domain(r.email), rendered_at) for r in recipients],
        )
        # For the opt-out feed only: the address each message went to (never logged).
        repo.record_emails(
            delivery_id, [RecipientEmail(r.id, r.email, rendered_at) for r in recipients if r.email]
        )
    return messages


def report_failures(
    delivery_id: str,
    recipient_ids: Sequence[str],
    *,
    actor: str = "system",
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> FailureReport:
    """Count these recipients' messages as not delivered; repeating a report changes nothing."""
    _check_batch("recipient_ids", recipient_ids, allow_duplicates=True)
    repo = _or_default(repo)
    _existing(delivery_id, repo)
    report = repo.mark_failed(delivery_id, list(dict.fromkeys(recipient_ids)))
    audit.record(
        "failures_reported",
        f"delivery/{delivery_id}",
        actor=actor,
        after={
            "failed": report.failed,
            "already_failed": len(report.already_failed),
            "unknown": len(report.unknown),
        },
        trail=trail,
        now=now,
    )
    return report


def email_domain(email: str | None) -> str | None:
    """The lower-cased domain of an address (``Ann@Example.COM`` -> ``example.com``), else None."""
    if not email or "@" not in email:
        return None
    domain = utf8_prefix(email.rpartition("@")[2].strip().lower(), MAX_NAME_BYTES)
    return domain or None


def tracking_base_url(headers: Mapping[str, str]) -> str:
    """Where /r and /o live: the configured URL, else the host this API request came to."""
    configured = settings().tracking_base_url
    if configured:
        return configured
    host = (headers.get("host") or "").strip()
    if not _HOST.match(host):
        raise InvalidRequest(
            "cannot tell the tracking base URL from this request's Host header; set MSGTRACK_TRACKING_BASE_URL"
        )
    proto = (headers.get("x-forwarded-proto") or "").strip().lower()
    return f"{proto if proto in ('http', 'https') else 'https'}://{host}"


def _or_default(repo: DeliveryRepository | None) -> DeliveryRepository:
    return repo if repo is not None else repository()


def _existing(delivery_id: str, repo: DeliveryRepository) -> Delivery:
    delivery = repo.get(delivery_id)
    if delivery is None:
        raise DeliveryNotFound(f"no delivery {delivery_id!r}")
    return delivery


def _check_batch(name: str, recipient_ids: Sequence[str], *, allow_duplicates: bool = False) -> None:
    if not recipient_ids:
        raise InvalidRequest(f"{name} must name at least one recipient")
    if len(recipient_ids) > MAX_RECIPIENTS_PER_CALL:
        raise InvalidRequest(
            f"{name} names {len(recipient_ids)} recipients; send at most {MAX_RECIPIENTS_PER_CALL} per call"
        )
    if allow_duplicates:
        return
    seen: set[str] = set()
    for recipient_id in recipient_ids:
        if recipient_id in seen:
            raise InvalidRequest(f"{name}: recipient {recipient_id!r} appears more than once")
        seen.add(recipient_id)
