"""Request and response bodies of ``/api/webhooks`` (the contract's "Events out")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from functions.shared.webhooks import EVENT_TYPES, Webhook


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The URL's rules (https, a public address) and the event names are the logic's: a 422 that says why.
    url: StrictStr = Field(description="the receiver: https on a public address")
    events: list[StrictStr] = Field(description=f"the hit types to send, any of {', '.join(EVENT_TYPES)}")
    description: StrictStr | None = Field(default=None, description="up to 500 characters")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: str
    last_error: str | None = Field(description="the latest failed delivery's error, null if none")
    last_error_at: str | None
    failing_since: str | None = Field(description="the first failure since the last success; null: healthy")
    dead_lettered: int = Field(description="deliveries given up after 24 hours of failures")

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookOut:
        return cls(
            id=webhook.id,
            url=webhook.url,
            events=list(webhook.events),
            description=webhook.description,
            created_at=webhook.created_at,
            last_error=webhook.last_error,
            last_error_at=webhook.last_error_at,
            failing_since=webhook.failing_since,
            dead_lettered=webhook.dead_lettered,
        )


class CreatedWebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    secret: str = Field(description="whsec_<base64>: verifies the webhook-signature header; shown only here")

    @classmethod
    def of(cls, webhook: Webhook, secret: str) -> CreatedWebhookOut:
        shown = WebhookOut.of(webhook)
        return cls(
            id=shown.id, url=shown.url, events=shown.events, description=shown.description, secret=secret
        )


class WebhooksOut(BaseModel):
    items: list[WebhookOut]
