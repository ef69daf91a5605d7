"""Webhooks as the report API manages them: register (the secret shown once), list, delete; audited.

The URL is checked here (https, every address its host resolves to public; ``functions/shared/egress.py``)
and again by the deliverer before each delivery. Each function takes its repository as an argument
(default: the container's DynamoDB one), so the unit tests hand it an in-memory fake.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from functions.api import audit, audited_registry
from functions.api.errors import InvalidWebhook, WebhookNotFound
from functions.shared import egress, ids, timeutil, webhooks
from functions.shared.webhooks import EVENT_TYPES, Webhook, WebhookRepository

MAX_DESCRIPTION = 500
MAX_WEBHOOKS = 20  # each one multiplies every hit's deliveries
_WEBHOOK_ID = re.compile(r"^wh[0-9a-z]{1,30}$")


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str  # shown in this answer only


def create(
    url: str,
    events: Sequence[str],
    description: str | None = None,
    *,
    actor: str,
    repo: WebhookRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
    key: bytes | None = None,
    policy: egress.EgressPolicy | None = None,
    resolver: egress.Resolver | None = None,
) -> CreatedWebhook:
    """Register a webhook for ``events``; RefusedUrl (422) unless its URL may be called."""
    repo = _or_default(repo)
    policy = policy or egress.EgressPolicy(allow_http=webhooks.allow_http())
    checked = egress.checked_url(url, policy)
    egress.resolve(checked, policy, resolver or egress.system_resolver)
    webhook = Webhook(
        id="wh" + ids.random_id(12),
        url=checked,
        events=_checked_events(events),
        salt=secrets.token_urlsafe(16),
        created_at=timeutil.iso(now or timeutil.now()),
        description=_checked_description(description),
        created_by=actor,
    )
    if len(repo.all()) >= MAX_WEBHOOKS:
        raise InvalidWebhook(f"an account has at most {MAX_WEBHOOKS} webhooks; delete one first")
    audited_registry.add(webhook, _AUDITED, repo, audited_registry.Change(actor, trail, now))
    secret = webhooks.secret_of(webhook.id, webhook.salt, key or webhooks.webhook_key())
    return CreatedWebhook(webhook, secret)


def newest(repo: WebhookRepository | None = None) -> list[Webhook]:
    """Every webhook, newest first."""
    return audited_registry.newest(_or_default(repo))


def delete(
    webhook_id: str,
    *,
    actor: str,
    repo: WebhookRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> None:
    """Remove a webhook: nothing more is sent to it, deliveries already queued are dropped."""
    audited_registry.delete(
        webhook_id, _AUDITED, _or_default(repo), audited_registry.Change(actor, trail, now)
    )


def _checked_events(events: Sequence[str]) -> tuple[str, ...]:
    if not events:
        raise InvalidWebhook(f"events: name at least one of {', '.join(EVENT_TYPES)}")
    chosen: list[str] = []
    for position, event in enumerate(events):
        if event not in EVENT_TYPES:
            raise InvalidWebhook(f"events.{position}: {event!r} is not one of {', '.join(EVENT_TYPES)}")
        if event not in chosen:
            chosen.append(event)
    return tuple(chosen)


def _checked_description(description: str | None) -> str | None:
    if description is None:
        return None
    text = description.strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidWebhook(f"description: at most {MAX_DESCRIPTION} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise InvalidWebhook("description: must not contain control characters")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidWebhook("description: must be valid Unicode text") from None
    return text or None


def _described(webhook: Webhook) -> dict[str, object]:
    return {"url": webhook.url, "events": list(webhook.events), "description": webhook.description}


def _not_found(webhook_id: str) -> WebhookNotFound:
    return WebhookNotFound(f"there is no webhook {webhook_id!r}")


_AUDITED = audited_registry.RegistryAudit[Webhook](
    "webhook_created", "webhook_deleted", "webhooks", _WEBHOOK_ID, _not_found, _described
)


def _or_default(repo: WebhookRepository | None) -> WebhookRepository:
    return repo if repo is not None else webhooks.repository()
