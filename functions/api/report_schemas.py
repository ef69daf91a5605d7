"""What the report routes accept and answer: the Tracking tabs and the tracking workflow's status.

These models are the route return types, so Powertools validates every answer against them and the
OpenAPI document (``/api/openapi.json``) describes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

from functions.shared import timeutil

LogType = Literal["open", "click", "opt_out", "mirror"]
Order = Literal["asc", "desc"]
OutputFormat = Literal["json", "csv"]
GroupBy = Literal["url", "label", "category"]


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time")
    try:
        return timeutil.parse(value)
    except ValueError as exc:
        raise ValueError("must be an ISO 8601 time such as 2026-11-23T08:00:00Z") from exc


# An ISO 8601 time in a query string; a naive time is UTC. Anything else is a 422.
IsoTime = Annotated[
    datetime, BeforeValidator(_parse_time), WithJsonSchema({"type": "string", "format": "date-time"})
]


# --- a delivery's statistics ------------------------------------------------------------------


class TimelinePoint(BaseModel):
    at: str  # the hour, "2026-11-23T08:00:00Z"
    opens: int  # open-pixel events in that hour
    clicks: int  # click-link events in that hour


class BreakdownRow(BaseModel):
    name: str
    opens: int
    clicks: int


class DomainRow(BreakdownRow):
    """Recipients who opened / clicked, against the messages sent to that email domain."""

    sent: int
    open_rate: float
    click_rate: float


class Breakdowns(BaseModel):
    browser: list[BreakdownRow]  # open and click events
    os: list[BreakdownRow]
    device: list[BreakdownRow]
    domain: list[DomainRow]  # distinct recipients


class Statistics(BaseModel):
    sent: int
    delivered: int
    opens: int
    total_opens: int
    clicks: int
    person_clicks: int
    total_clicks: int
    opt_outs: int
    mirror_page_views: int
    estimated_forwards: int
    open_rate: float
    click_rate: float
    reactivity: float
    timeline: list[TimelinePoint]
    breakdowns: Breakdowns


# --- tracked URLs -----------------------------------------------------------------------------


class UrlIndicators(BaseModel):
    id: str
    url: str
    label: str
    category: str
    tracked: bool
    clicks: int  # events
    distinct_clicks: int  # distinct recipients
    share: float  # of every event on the delivery's URLs, percent
    first_click: str | None
    last_click: str | None


class UrlGroup(BaseModel):
    """URLs sharing a target, label or category. Distinct recipients do not add up, so none here."""

    key: str
    clicks: int
    share: float
    url_ids: list[str]


class UrlReport(BaseModel):
    urls: list[UrlIndicators]
    groups: list[UrlGroup] | None = None  # present when group_by is given
    since: str | None = None  # the window the counts cover, when one was asked for
    until: str | None = None


class HotClickLink(BaseModel):
    url_id: str
    url: str
    label: str
    clicks: int
    percent: float


class HotClicks(BaseModel):
    links: list[HotClickLink]
    html: str


# --- tracking logs ----------------------------------------------------------------------------

LOG_COLUMNS: tuple[str, ...] = (
    "event_id",
    "delivery_id",
    "recipient_id",
    "type",
    "url_id",
    "url",
    "label",
    "at",
    "browser",
    "os",
    "device",
    "proof",
)


class LogItem(BaseModel):
    event_id: str
    delivery_id: str
    recipient_id: str
    type: str
    url_id: str | None
    url: str | None
    label: str | None
    at: str
    browser: str | None
    os: str | None
    device: str | None
    proof: bool


class LogPage(BaseModel):
    items: list[LogItem]
    next_cursor: str | None


class RecipientLogItem(LogItem):
    delivery_label: str


class RecipientLogPage(BaseModel):
    items: list[RecipientLogItem]
    next_cursor: str | None


# --- the tracking workflow --------------------------------------------------------------------


class Run(BaseModel):
    id: str
    status: str  # running, succeeded, failed (skipped: another run held the lock)
    trigger: str | None
    started_at: str
    finished_at: str | None
    events_processed: int
    errors: list[str]


class WorkflowStatus(BaseModel):
    schedule: str
    last_run: Run | None
    last_success_at: str | None
    runs: list[Run]


class RunStarted(BaseModel):
    id: str
