"""What the report routes accept and answer: the Tracking tabs and the tracking workflow's status.

These models are the route return types, so Powertools validates every answer against them and the
OpenAPI document (``/api/openapi.json``) describes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from functions.shared import timeutil

LogType = Literal["open", "click", "opt_out", "mirror", "page", "transaction"]
Order = Literal["asc", "desc"]
OutputFormat = Literal["json", "csv"]
GroupBy = Literal["url", "label", "category"]
HotClicksFormat = Literal["json", "html"]
# Which hits a report counts: all traffic (the default, as before), or only hits no machine made.
Traffic = Literal["all", "human"]


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
    at: str = Field(description='the start of the hour (or day), "2026-11-23T08:00:00Z"')
    opens: int = Field(description="open-pixel events in that hour (or day)")
    clicks: int = Field(description="events on click links in that hour (or day)")


class Milestones(BaseModel):
    """How fast the events so far came in, in whole hours from ``TimeToReach.since``: an event in the
    first hour is reached within 1 hour. Null while there are no such events."""

    hours_to_50_percent: int | None = Field(description="hours until half of the events so far had happened")
    hours_to_90_percent: int | None = Field(description="hours until 90 % of the events so far had happened")


class TimeToReach(BaseModel):
    since: str | None = Field(description="the start of the first hour with an open or a click event")
    opens: Milestones = Field(description="open-pixel events")
    clicks: Milestones = Field(description="events on click links")


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


class HumanStatistics(BaseModel):
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


class MachineStatistics(BaseModel):
    total_opens: int = Field(description="open-pixel events machines made (all traffic includes them)")
    total_clicks: int = Field(description="click-link events machines made (all traffic includes them)")
    by_kind: dict[str, int] = Field(
        description="logged machine hits per kind (apple_mpp, scanner, bot), honeypot hits included"
    )


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
    page_views: int = Field(description="pages viewed by recipients after a click (web-tracking tag)")
    transactions: int = Field(description="transactions by recipients after a click (web-tracking tag)")
    transaction_amount: dict[str, float] = Field(
        description='transaction amounts per currency, rounded to 2 decimals, e.g. {"EUR": 12.5}; {} when none'
    )
    estimated_forwards: int
    open_rate: float
    click_rate: float
    reactivity: float
    timeline: list[TimelinePoint] = Field(description="opens and clicks per hour, hours with events only")
    timeline_daily: list[TimelinePoint] = Field(
        description="opens and clicks per UTC day, days with events only: the timeline of a long window"
    )
    time_to_reach: TimeToReach = Field(description="hours taken to reach 50 % and 90 % of the events so far")
    breakdowns: Breakdowns
    human: HumanStatistics = Field(
        description="the same indicators over hits no machine made (a human click still makes a human open)"
    )
    machine: MachineStatistics = Field(description="hits machines made (Apple MPP, scanners, bots)")
    traffic: Literal["all", "human"] = Field(
        default="all", description="the traffic the timelines and breakdowns count (the traffic parameter)"
    )


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
    human_clicks: int = Field(description="events no machine made")
    human_distinct_clicks: int = Field(description="distinct recipients with an event no machine made")
    human_share: float = Field(description="of every human event on the delivery's URLs, percent")


class UrlGroup(BaseModel):
    """URLs sharing a target, label or category. Distinct recipients do not add up, so none here."""

    key: str
    clicks: int
    share: float
    url_ids: list[str]
    human_clicks: int = Field(description="events no machine made")
    human_share: float = Field(description="of every human event on the delivery's URLs, percent")


class UrlReport(BaseModel):
    urls: list[UrlIndicators]
    groups: list[UrlGroup] | None = None  # present when group_by is given
    since: str | None = None  # the window the counts cover, when one was asked for
    until: str | None = None


class ClickPath(BaseModel):
    url_ids: list[str] = Field(
        description="the click links in the order clicked; a link clicked again at once counts once"
    )
    recipients: int = Field(description="recipients whose clicks followed this path")
    share: float = Field(description="of the recipients with a click path, percent")
    cut_short: bool = Field(description="the path went on beyond the links listed")


class Transition(BaseModel):
    from_url_id: str
    to_url_id: str
    count: int = Field(description="times a recipient clicked to_url_id next after from_url_id")


class PageAfterLink(BaseModel):
    after_url_id: str = Field(description="the click link whose click the visit is attributed to")
    url: str = Field(description="the page the web-tracking tag ran on")
    views: int = Field(description="page views attributed to a click on that link")


class ClickStreams(BaseModel):
    recipients: int = Field(description="recipients who clicked at least one click link")
    paths: list[ClickPath] = Field(description="the most followed paths, most recipients first")
    other_recipients: int = Field(description="recipients whose path is not among those listed")
    transitions: list[Transition] = Field(description="link-to-link moves, most frequent first")
    other_transitions: int = Field(description="moves not listed (beyond the pre-aggregated transitions)")
    pages: list[PageAfterLink] = Field(
        description="pages visited after each link (web-tracking tag), most viewed first",
    )
    other_pages: int = Field(description="page views not listed (beyond the pre-aggregated pages)")


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
    "amount",
    "currency",
    "machine",
    "machine_reason",
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
    amount: float | None = Field(description="transactions: the amount, rounded to 2 decimals; else null")
    currency: str | None = Field(description="transactions: ISO 4217, upper case; else null")
    machine: str | None = Field(
        description="null for a person; else apple_mpp, scanner or bot: which kind of machine made the hit"
    )
    machine_reason: str | None = Field(description="the signal that marked a machine; null for a person")


class LogPage(BaseModel):
    items: list[LogItem]
    next_cursor: str | None


class RecipientLogItem(LogItem):
    delivery_label: str


class RecipientLogPage(BaseModel):
    items: list[RecipientLogItem]
    next_cursor: str | None


# --- the tracking workflow --------------------------------------------------------------------


class RunWorker(BaseModel):
    shards: list[str]  # the raw-event shards the worker consolidated
    events_processed: int
    status: str  # succeeded, failed


class Run(BaseModel):
    id: str
    status: str  # running, succeeded, failed (skipped: another run held the lock)
    trigger: str | None
    started_at: str
    finished_at: str | None
    events_processed: int
    errors: list[str]
    workers: list[RunWorker] = []  # one per worker, their events_processed adding up to the run's


class WorkflowStatus(BaseModel):
    schedule: str
    last_run: Run | None
    last_success_at: str | None
    runs: list[Run]


class RunStarted(BaseModel):
    id: str
