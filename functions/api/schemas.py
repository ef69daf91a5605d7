"""Request and response shapes of the deliveries routes (validated by Powertools, shown in OpenAPI).

Requests forbid unknown fields so a misspelt option is a 422 naming it, never silently ignored.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from functions.api.deliveries import DeliveryDetails, DeliveryPage
from functions.api.delivery_repository import DeliverySummary, FailureReport, TrackedUrl
from functions.api.rendering import Recipient, RenderedMessage

MAX_EXCLUDE_PATTERNS = 100


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _without_control_characters(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


RecipientId = Annotated[str, Field(min_length=1, max_length=256)]
FieldValue = StrictStr | StrictBool | StrictInt | StrictFloat


# --- requests ---------------------------------------------------------------------------------


class CreateDelivery(_Request):
    label: str = Field(min_length=1, max_length=500)
    html: str = Field(min_length=1)
    text: str | None = None
    track_opens: bool = True
    track_clicks: bool = True
    exclude_url_patterns: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=list, max_length=MAX_EXCLUDE_PATTERNS
    )


class RecipientIn(_Request):
    id: RecipientId
    email: str | None = Field(default=None, max_length=320)
    fields: dict[Annotated[str, Field(min_length=1, max_length=128)], FieldValue] = Field(
        default_factory=dict, max_length=200
    )

    _check_id = field_validator("id")(_without_control_characters)

    def to_recipient(self) -> Recipient:
        return Recipient(id=self.id, email=self.email, fields={k: _text(v) for k, v in self.fields.items()})


class RenderMessages(_Request):
    # The 1-1000 bound is the logic's (a 400 with a clear sentence), not a schema constraint.
    recipients: list[RecipientIn]
    proof: bool = False


class ReportFailures(_Request):
    recipient_ids: list[RecipientId]

    @field_validator("recipient_ids")
    @classmethod
    def _no_control_characters(cls, value: list[str]) -> list[str]:
        return [_without_control_characters(v) for v in value]


def _text(value: str | bool | int | float) -> str:
    """A personalization value as text; booleans as JSON spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- responses --------------------------------------------------------------------------------


class UrlOut(BaseModel):
    id: str
    url: str
    label: str
    category: str
    tracked: bool

    @classmethod
    def of(cls, url: TrackedUrl) -> UrlOut:
        return cls(id=url.url_id, url=url.url, label=url.label, category=url.category, tracked=url.tracked)


class DeliveryOut(BaseModel):
    id: str
    label: str
    track_opens: bool
    track_clicks: bool
    created_at: str
    urls: list[UrlOut]

    @classmethod
    def of(cls, details: DeliveryDetails) -> DeliveryOut:
        delivery = details.delivery
        return cls(
            id=delivery.id,
            label=delivery.label,
            track_opens=delivery.track_opens,
            track_clicks=delivery.track_clicks,
            created_at=delivery.created_at,
            urls=[UrlOut.of(url) for url in details.urls],
        )


class DeliveryWithContent(DeliveryOut):
    html: str
    text: str | None

    @classmethod
    def of(cls, details: DeliveryDetails) -> DeliveryWithContent:
        return cls(
            **DeliveryOut.of(details).model_dump(), html=details.delivery.html, text=details.delivery.text
        )


class DeliverySummaryOut(BaseModel):
    id: str
    label: str
    track_opens: bool
    track_clicks: bool
    created_at: str
    url_count: int

    @classmethod
    def of(cls, summary: DeliverySummary) -> DeliverySummaryOut:
        return cls(
            id=summary.id,
            label=summary.label,
            track_opens=summary.track_opens,
            track_clicks=summary.track_clicks,
            created_at=summary.created_at,
            url_count=summary.url_count,
        )


class DeliveryPageOut(BaseModel):
    items: list[DeliverySummaryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: DeliveryPage) -> DeliveryPageOut:
        return cls(items=[DeliverySummaryOut.of(s) for s in page.items], next_cursor=page.next_cursor)


class MessageOut(BaseModel):
    recipient_id: str
    html: str
    text: str | None

    @classmethod
    def of(cls, message: RenderedMessage) -> MessageOut:
        return cls(recipient_id=message.recipient_id, html=message.html, text=message.text)


class MessagesOut(BaseModel):
    messages: list[MessageOut]

    @classmethod
    def of(cls, messages: list[RenderedMessage]) -> MessagesOut:
        return cls(messages=[MessageOut.of(m) for m in messages])


class FailuresOut(BaseModel):
    failed: int = Field(description="messages newly counted as not delivered")
    already_failed: list[str]
    unknown: list[str] = Field(description="recipients this delivery never sent a (non-proof) message to")

    @classmethod
    def of(cls, report: FailureReport) -> FailuresOut:
        return cls(
            failed=report.failed, already_failed=list(report.already_failed), unknown=list(report.unknown)
        )
