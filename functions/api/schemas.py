"""Request and response shapes of the deliveries routes (validated by Powertools, shown in OpenAPI).

Requests forbid unknown fields so a misspelt option is a 422 naming it, never silently ignored.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from functions.api.audit import AuditEntry, AuditPage
from functions.api.deliveries import DeliveryDetails, DeliveryPage
from functions.api.delivery_repository import (
    DeliverySummary,
    FailureReport,
    TrackedUrl,
    UrlTrackingRules,
)
from functions.api.opt_outs import OptOut, OptOutPage
from functions.api.rendering import Recipient, RenderedMessage
from functions.api.sites import IssuedSite
from functions.api.url_options import MAX_PATTERNS, MAX_URL_PARAMETERS
from functions.shared.machine import MachineSettings
from functions.shared.machine_settings import settings_view

MAX_EXCLUDE_PATTERNS = 100
Category = Literal["click", "opt_out", "mirror"]


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
    url_parameters: dict[Annotated[str, Field(min_length=1, max_length=128)], StrictStr] = Field(
        default_factory=dict,
        max_length=MAX_URL_PARAMETERS,
        description="appended to every tracked target's query (utm_source, ...); a parameter the link "
        "already has wins",
    )

    @field_validator("url_parameters")
    @classmethod
    def _short_values(cls, value: dict[str, str]) -> dict[str, str]:
        if any(len(v) > 2000 for v in value.values()):
            raise ValueError("a parameter value is at most 2000 characters")
        return value


class ChangeUrl(_Request):
    """Any of the three; at least one."""

    tracked: StrictBool | None = None
    label: str | None = Field(default=None, min_length=1, max_length=500)
    category: Category | None = None

    @model_validator(mode="after")
    def _something(self) -> ChangeUrl:
        if self.tracked is None and self.label is None and self.category is None:
            raise ValueError("give at least one of tracked, label, category")
        return self


Pattern = Annotated[str, Field(min_length=1, max_length=2000)]


class UrlTrackingRulesIn(_Request):
    never_track: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    always_track: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)

    def to_rules(self) -> UrlTrackingRules:
        return UrlTrackingRules(never_track=tuple(self.never_track), always_track=tuple(self.always_track))


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


class CreateSite(_Request):
    # The bounds and the host-name rules are the logic's (``sites.py``): a 422 with a clear sentence.
    name: StrictStr = Field(description="shown in reports, 1 to 200 characters")
    domains: list[StrictStr] = Field(
        description="1 to 50 host names the tag may report from, e.g. shop.example.com; subdomains match too"
    )


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
    url_parameters: dict[str, str] = Field(description="appended to every tracked target")
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
            url_parameters=dict(delivery.url_parameters),
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
    headers: dict[str, str] = Field(
        description="mail headers to add to the message: List-Unsubscribe and List-Unsubscribe-Post "
        "(RFC 8058 one-click unsubscribe); sign them with DKIM"
    )

    @classmethod
    def of(cls, message: RenderedMessage) -> MessageOut:
        return cls(
            recipient_id=message.recipient_id,
            html=message.html,
            text=message.text,
            headers=dict(message.headers),
        )


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


class UrlTrackingRulesOut(BaseModel):
    never_track: list[str]
    always_track: list[str]

    @classmethod
    def of(cls, rules: UrlTrackingRules) -> UrlTrackingRulesOut:
        return cls(never_track=list(rules.never_track), always_track=list(rules.always_track))


class MachineRangeIn(_Request):
    cidr: str = Field(description="an IPv4 or IPv6 network in CIDR notation, e.g. 203.0.113.0/24")
    kind: str = Field(description="apple_mpp, scanner or bot")


class MachineAgentIn(_Request):
    pattern: str = Field(description="a case-insensitive substring of the User-Agent")
    kind: str = Field(description="apple_mpp, scanner or bot")


class MachineDetectionIn(_Request):
    """The operator's machine-detection settings; checked by ``machine_settings.validate_settings``."""

    builtin: dict[str, Any] | None = Field(default=None, description="read-only: ignored when sent back")
    ranges: list[MachineRangeIn] = Field(default_factory=list)
    user_agents: list[MachineAgentIn] = Field(default_factory=list)
    honeypot: bool = True
    burst_seconds: int = Field(default=30, description="the honeypot burst window, 1 to 300 seconds")

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(exclude={"builtin"})


class MachineRangeOut(BaseModel):
    cidr: str
    kind: str


class BuiltinRangeOut(MachineRangeOut):
    source: str


class MachineAgentOut(BaseModel):
    pattern: str
    kind: str


class BuiltinMachineListsOut(BaseModel):
    ranges: list[BuiltinRangeOut]
    user_agents: list[MachineAgentOut]
    updated: str


class MachineDetectionOut(BaseModel):
    builtin: BuiltinMachineListsOut = Field(description="the shipped lists, read-only, with their sources")
    ranges: list[MachineRangeOut]
    user_agents: list[MachineAgentOut]
    honeypot: bool
    burst_seconds: int

    @classmethod
    def of(cls, settings: MachineSettings) -> MachineDetectionOut:
        return cls.model_validate(settings_view(settings))


class AuditEntryOut(BaseModel):
    id: str = Field(description="sorts by time")
    at: str
    actor: str = Field(description="the name of the API token that made the change")
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            before=dict(entry.before) if entry.before is not None else None,
            after=dict(entry.after) if entry.after is not None else None,
        )


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: AuditPage) -> AuditPageOut:
        return cls(items=[AuditEntryOut.of(e) for e in page.items], next_cursor=page.next_cursor)


class SiteOut(BaseModel):
    id: str
    name: str
    domains: list[str]
    site_token: str = Field(description="the signed token of the site's tag")
    created_at: str
    created_by: str | None = Field(default=None, description="the name of the API token that created it")
    pixel_url: str = Field(description="the tag as a 1x1 image: add ?type=page|transaction&url=...")
    script_url: str = Field(description="the tag as a script to include on the site's pages")

    @classmethod
    def of(cls, issued: IssuedSite) -> SiteOut:
        site = issued.site
        return cls(
            id=site.id,
            name=site.name,
            domains=list(site.domains),
            site_token=issued.site_token,
            created_at=site.created_at,
            created_by=site.created_by,
            pixel_url=issued.pixel_url,
            script_url=issued.script_url,
        )


class SitesOut(BaseModel):
    items: list[SiteOut]


class OptOutOut(BaseModel):
    recipient_id: str
    email: str | None = Field(description="the address the message was rendered for, if one was given")
    delivery_id: str
    at: str
    source: Literal["one_click", "link"] = Field(
        description="one_click: RFC 8058 unsubscribe (POST /u/{token}); link: an opt-out link followed"
    )
    event_id: str = Field(description="the opt-out's tracking event: the same opt-out has the same id")

    @classmethod
    def of(cls, opt_out: OptOut) -> OptOutOut:
        return cls(
            recipient_id=opt_out.recipient_id,
            email=opt_out.email,
            delivery_id=opt_out.delivery_id,
            at=opt_out.at,
            source=opt_out.source,
            event_id=opt_out.event_id,
        )


class OptOutPageOut(BaseModel):
    items: list[OptOutOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: OptOutPage) -> OptOutPageOut:
        return cls(items=[OptOutOut.of(o) for o in page.items], next_cursor=page.next_cursor)
