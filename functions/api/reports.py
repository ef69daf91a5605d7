"""The Tracking tabs and the tracking workflow's status: what the report routes ask for.

Indicators come only from items the tracking workflow pre-aggregated, so a report costs the same for
ten events or ten million. Tracking logs are read a page at a time with exact cursors: a page stops
at ``limit`` items and its cursor resumes right after the last item returned; a selective filter reads
at most ``MAX_ITEMS_READ_PER_PAGE`` chain items (``MAX_LOGS_READ_PER_PAGE`` logs in the recipient tab)
per request and answers with what it found and a cursor.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from functions.api import cursors, log_pages
from functions.api import launcher as launchers
from functions.api.log_pages import Positions
from functions.api.report_repository import (
    ClickStreamCounts,
    Delivery,
    HourCount,
    LogKey,
    LogQuery,
    ReportRepository,
    RunRecord,
    TrackedUrl,
    TrackingLog,
    UrlStats,
    repository,
)
from functions.api.report_schemas import (
    BreakdownRow,
    Breakdowns,
    ClickPath,
    ClickStreams,
    DomainRow,
    HotClickLink,
    HotClicks,
    HumanStatistics,
    LogItem,
    LogPage,
    MachineStatistics,
    Milestones,
    PageAfterLink,
    RecipientLogItem,
    RecipientLogPage,
    Run,
    RunStarted,
    RunWorker,
    Statistics,
    TimelinePoint,
    TimeToReach,
    Transition,
    UrlGroup,
    UrlIndicators,
    UrlReport,
    WorkflowStatus,
)
from functions.shared import ids, timeutil
from functions.shared.errors import DeliveryNotFound, InvalidCursor, InvalidRequest, TrackingNotActivated
from functions.shared.indicators import Indicators, amounts, money, rate
from functions.shared.models import PAGE_SEPARATOR, STREAM_CUT_SHORT, STREAM_SEPARATOR
from functions.shared.settings import settings

if TYPE_CHECKING:
    from functions.api.launcher import WorkflowLauncher
    from functions.shared.links import LinkSpec

MAX_LOGS_READ_PER_PAGE = 1_000  # a filter that matches little still answers quickly, with a cursor
# The delivery's logs are read by chain item (about 14 logs): a first round takes one of each of the
# 64 chains and leaves as much for the rest.
MAX_ITEMS_READ_PER_PAGE = 256
MAX_LOGS_READ_FOR_WINDOW = 10_000  # URL indicators over a time window are computed from the logs
MAX_ITEMS_READ_FOR_WINDOW = 2_000  # what the window's logs may take, in chain items, filtered out or not
# A delivery-scope cursor names its chains ("c": 1); one made before the logs were packed in chains
# named partitions that no longer hold them.
CHAINED_CURSOR = 1
MAX_RUNS_READ = 1_000  # how far back the last successful run is looked for
URL_EVENT_TYPES = frozenset({"click", "opt_out", "mirror"})
BREAKDOWN_DIMENSIONS = ("browser", "os", "device")
OTHER_ROW = "Other"  # a breakdown's row for the names it does not keep


def _repo(repo: ReportRepository | None) -> ReportRepository:
    return repo if repo is not None else repository()


def _tracked_delivery(repo: ReportRepository, delivery_id: str, *, with_content: bool = False) -> Delivery:
    """The delivery whose Tracking tab is asked for: 404 when unknown, 409 when it tracks nothing."""
    delivery = repo.delivery(delivery_id, with_content=with_content)
    if delivery is None:
        raise DeliveryNotFound(f"there is no delivery {delivery_id!r}")
    if not (delivery.track_opens or delivery.track_clicks):
        raise TrackingNotActivated(f"delivery {delivery_id!r} tracks neither opens nor clicks")
    return delivery


def require_tracked_delivery(delivery_id: str, repo: ReportRepository | None = None) -> None:
    """404 when the delivery is unknown, 409 when it tracks nothing: the Tracking tab's own checks."""
    _tracked_delivery(_repo(repo), delivery_id)


# --- statistics -------------------------------------------------------------------------------


def delivery_statistics(
    delivery_id: str, repo: ReportRepository | None = None, traffic: str = "all"
) -> Statistics:
    """Every indicator, the timelines and the breakdowns: two item reads and one small query.

    The top level counts all traffic, ``human`` the hits no machine made, ``machine`` the machines'.
    ``traffic="human"`` makes the timelines and breakdowns count human hits only.
    """
    repo = _repo(repo)
    _tracked_delivery(repo, delivery_id)
    sends = repo.send_counts(delivery_id)
    stats = repo.delivery_stats(delivery_id)
    indicators = Indicators.from_counts(
        sent=sends.sent,
        failed=sends.failed,
        opens=stats.opens,
        total_opens=stats.total_opens,
        clicks=stats.clicks,
        person_clicks=stats.person_clicks,
        total_clicks=stats.total_clicks,
        opt_outs=stats.opt_outs,
        mirror_page_views=stats.mirror_page_views,
        page_views=stats.page_views,
        transactions=stats.transactions,
    )
    human = Indicators.from_counts(
        sent=sends.sent,
        failed=sends.failed,
        **{name: int(stats.human.get(name, 0)) for name in HUMAN_COUNTERS},
    )
    hours = repo.hours(delivery_id)
    if traffic == "human":
        # Hours with human events only, as the all-traffic timeline lists hours with events only.
        hours = [
            HourCount(h.hour, h.human_opens, h.human_clicks) for h in hours if h.human_opens or h.human_clicks
        ]
        counts, other = stats.human_breakdowns, stats.human_other_breakdowns
    else:
        counts, other = stats.breakdowns, stats.other_breakdowns
    timeline = [TimelinePoint(at=h.hour, opens=h.opens, clicks=h.clicks) for h in hours]
    breakdowns = Breakdowns(
        browser=_rows(counts.get("browser", {}), other.get("browser", {})),
        os=_rows(counts.get("os", {}), other.get("os", {})),
        device=_rows(counts.get("device", {}), other.get("device", {})),
        domain=_domain_rows(
            counts.get("domain", {}), sends.domains, other.get("domain", {}), sends.other_domains
        ),
    )
    machine = stats.machine
    return Statistics(
        sent=indicators.sent,
        delivered=indicators.delivered,
        opens=indicators.opens,
        total_opens=indicators.total_opens,
        clicks=indicators.clicks,
        person_clicks=indicators.person_clicks,
        total_clicks=indicators.total_clicks,
        opt_outs=indicators.opt_outs,
        mirror_page_views=indicators.mirror_page_views,
        page_views=indicators.page_views,
        transactions=indicators.transactions,
        transaction_amount=amounts(stats.transaction_amount),
        estimated_forwards=indicators.estimated_forwards,
        open_rate=indicators.open_rate,
        click_rate=indicators.click_rate,
        reactivity=indicators.reactivity,
        timeline=timeline,
        timeline_daily=_daily(hours),
        time_to_reach=_time_to_reach(hours),
        breakdowns=breakdowns,
        human=HumanStatistics(
            opens=human.opens,
            total_opens=human.total_opens,
            clicks=human.clicks,
            person_clicks=human.person_clicks,
            total_clicks=human.total_clicks,
            opt_outs=human.opt_outs,
            mirror_page_views=human.mirror_page_views,
            estimated_forwards=human.estimated_forwards,
            open_rate=human.open_rate,
            click_rate=human.click_rate,
            reactivity=human.reactivity,
        ),
        machine=MachineStatistics(
            total_opens=int(machine.get("total_opens", 0)),
            total_clicks=int(machine.get("total_clicks", 0)),
            by_kind={kind: int(n) for kind, n in sorted(dict(machine.get("by_kind", {})).items())},
        ),
        traffic="human" if traffic == "human" else "all",
    )


HUMAN_COUNTERS = (
    "opens",
    "total_opens",
    "clicks",
    "person_clicks",
    "total_clicks",
    "opt_outs",
    "mirror_page_views",
)


def _daily(hours: Sequence[HourCount]) -> list[TimelinePoint]:
    """The hourly counts added up per UTC day, oldest first."""
    days: dict[str, tuple[int, int]] = {}
    for hour in hours:
        opens, clicks = days.get(hour.hour[:10], (0, 0))
        days[hour.hour[:10]] = (opens + hour.opens, clicks + hour.clicks)
    return [
        TimelinePoint(at=f"{day}T00:00:00Z", opens=opens, clicks=clicks)
        for day, (opens, clicks) in sorted(days.items())
    ]


def _time_to_reach(hours: Sequence[HourCount]) -> TimeToReach:
    """Hours from the first hour with an event until 50 % and 90 % of the opens (and clicks) so far.

    Counted in whole hours of the hourly timeline, the hour the share was reached included, so it
    reads "within N hours". Gaps between hours count: the hours are dated, not numbered.
    """
    active = sorted((h for h in hours if h.opens or h.clicks), key=lambda h: h.hour)
    if not active:
        empty = Milestones(hours_to_50_percent=None, hours_to_90_percent=None)
        return TimeToReach(since=None, opens=empty, clicks=empty)
    start = timeutil.parse(active[0].hour)
    elapsed = [int((timeutil.parse(h.hour) - start).total_seconds() // 3600) + 1 for h in active]
    return TimeToReach(
        since=active[0].hour,
        opens=_milestones(elapsed, [h.opens for h in active]),
        clicks=_milestones(elapsed, [h.clicks for h in active]),
    )


def _milestones(elapsed: Sequence[int], counts: Sequence[int]) -> Milestones:
    total = sum(counts)

    def reached(percent: int) -> int | None:
        so_far = 0
        for hours, count in zip(elapsed, counts, strict=True):
            so_far += count
            if total and so_far * 100 >= total * percent:  # exact: no float rounding at the boundary
                return hours
        return None

    return Milestones(hours_to_50_percent=reached(50), hours_to_90_percent=reached(90))


def _with_other(
    counts: Mapping[str, Mapping[str, int]], other: Mapping[str, int]
) -> tuple[dict[str, Mapping[str, int]], bool]:
    """The counts with the names a breakdown does not keep (``limits.MAX_BREAKDOWN_NAMES``) added to
    its "Other" row (which also holds what the user-agent parser could not name); whether it did."""
    counts = dict(counts)
    if not any(int(n) for n in other.values()):
        return counts, False
    known = counts.get(OTHER_ROW, {})
    counts[OTHER_ROW] = {m: int(known.get(m, 0)) + int(other.get(m, 0)) for m in ("opens", "clicks")}
    return counts, True


def _last_if_other(rows: list[Any], overflowed: bool) -> list[Any]:
    """ "Other" comes last when it holds the names not kept: it is the rest, not a name."""
    if not overflowed:
        return rows
    return [row for row in rows if row.name != OTHER_ROW] + [row for row in rows if row.name == OTHER_ROW]


def _rows(counts: Mapping[str, Mapping[str, int]], other: Mapping[str, int]) -> list[BreakdownRow]:
    counts, overflowed = _with_other(counts, other)
    rows = [
        BreakdownRow(name=name, opens=int(row.get("opens", 0)), clicks=int(row.get("clicks", 0)))
        for name, row in counts.items()
    ]
    return _last_if_other(sorted(rows, key=lambda row: (-(row.opens + row.clicks), row.name)), overflowed)


def _domain_rows(
    counts: Mapping[str, Mapping[str, int]],
    sent: Mapping[str, int],
    other: Mapping[str, int],
    other_sent: int = 0,
) -> list[DomainRow]:
    """Every domain messages were sent to or events came from, rated against its messages sent; the
    domains past the bounds of either count (limits.py) in one "Other" row."""
    counts, overflowed = _with_other(counts, other)
    if other_sent:
        sent = {**sent, OTHER_ROW: int(sent.get(OTHER_ROW, 0)) + other_sent}
        overflowed = True
    rows = []
    for name in set(counts) | set(sent):
        opens = int(counts.get(name, {}).get("opens", 0))
        clicks = int(counts.get(name, {}).get("clicks", 0))
        messages = int(sent.get(name, 0))
        rows.append(
            DomainRow(
                name=name,
                opens=opens,
                clicks=clicks,
                sent=messages,
                open_rate=rate(opens, messages),
                click_rate=rate(clicks, messages),
            )
        )
    return _last_if_other(
        sorted(rows, key=lambda row: (-(row.opens + row.clicks), -row.sent, row.name)), overflowed
    )


# --- tracked URLs -----------------------------------------------------------------------------


def url_report(
    delivery_id: str,
    *,
    group_by: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    repo: ReportRepository | None = None,
) -> UrlReport:
    """Every tracked URL with its click events, distinct recipients and share of all URL events.

    Without a window the counts are the workflow's pre-aggregated ones. With ``since`` (inclusive)
    and/or ``until`` (exclusive) they are computed from the window's tracking logs, reading at most
    ``MAX_LOGS_READ_FOR_WINDOW`` of them; a busier window is refused rather than under-counted.
    """
    repo = _repo(repo)
    _tracked_delivery(repo, delivery_id)
    urls = repo.tracked_urls(delivery_id)
    windowed = since is not None or until is not None
    if windowed:
        stats = _window_url_stats(repo, delivery_id, _iso(since), _iso(until))
    else:
        stats = repo.url_stats(delivery_id)
    counted = {url.url_id: stats.get(url.url_id, UrlStats(url.url_id)) for url in urls}
    totals = _Totals(
        clicks=sum(s.clicks for s in counted.values()),
        human_clicks=sum(s.human_clicks for s in counted.values()),
    )
    rows = [_url_row(url, counted[url.url_id], totals) for url in urls]
    groups = _groups(urls, counted, totals, group_by) if group_by else None
    return UrlReport(
        urls=rows,
        groups=groups,
        since=_iso(since) if windowed else None,
        until=_iso(until) if windowed else None,
    )


@dataclass(frozen=True)
class _Totals:
    """Every event on the delivery's URLs, and the human ones: what a URL's shares are of."""

    clicks: int
    human_clicks: int


def _url_row(url: TrackedUrl, stats: UrlStats, totals: _Totals) -> UrlIndicators:
    return UrlIndicators(
        id=url.url_id,
        url=url.url,
        label=url.label,
        category=url.category,
        tracked=url.tracked,
        clicks=stats.clicks,
        distinct_clicks=stats.distinct_clicks,
        share=rate(stats.clicks, totals.clicks),
        first_click=stats.first_click,
        last_click=stats.last_click,
        human_clicks=stats.human_clicks,
        human_distinct_clicks=stats.human_distinct_clicks,
        human_share=rate(stats.human_clicks, totals.human_clicks),
    )


def _groups(
    urls: Sequence[TrackedUrl], stats: Mapping[str, UrlStats], totals: _Totals, group_by: str
) -> list[UrlGroup]:
    keyed: dict[str, tuple[int, int, list[str]]] = {}
    for url in urls:
        key = {"url": url.url, "label": url.label, "category": url.category}[group_by]
        clicks, human_clicks, url_ids = keyed.get(key, (0, 0, []))
        counted = stats[url.url_id]
        keyed[key] = (clicks + counted.clicks, human_clicks + counted.human_clicks, [*url_ids, url.url_id])
    groups = [
        UrlGroup(
            key=key,
            clicks=clicks,
            share=rate(clicks, totals.clicks),
            url_ids=url_ids,
            human_clicks=human_clicks,
            human_share=rate(human_clicks, totals.human_clicks),
        )
        for key, (clicks, human_clicks, url_ids) in keyed.items()
    ]
    return sorted(groups, key=lambda group: (-group.clicks, group.key))


def _window_url_stats(
    repo: ReportRepository, delivery_id: str, since: str | None, until: str | None
) -> dict[str, UrlStats]:
    if since and until and since >= until:
        return {}
    query = LogQuery(
        scope="delivery",
        scope_id=delivery_id,
        forward=True,
        since=since,
        until=until,
        types=URL_EVENT_TYPES,
        counted_only=True,
    )
    clicks: dict[str, int] = {}
    recipients: dict[str, set[str]] = {}
    human_clicks: dict[str, int] = {}
    human_recipients: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    # One log beyond the cap tells a window of exactly the cap from a larger one.
    logs, more = log_pages.read_page(
        repo, log_pages.sources(query), Positions(), MAX_LOGS_READ_FOR_WINDOW, MAX_ITEMS_READ_FOR_WINDOW
    )
    if more is not None:
        raise InvalidRequest(
            f"more than {MAX_LOGS_READ_FOR_WINDOW:,} tracking logs fall in this window; narrow since/until"
        )
    for log in logs:
        if log.url_id is None:
            continue
        clicks[log.url_id] = clicks.get(log.url_id, 0) + 1
        recipients.setdefault(log.url_id, set()).add(log.recipient_id)
        if getattr(log, "machine", None) is None:  # the LOG's machine verdict, when it carries one
            human_clicks[log.url_id] = human_clicks.get(log.url_id, 0) + 1
            human_recipients.setdefault(log.url_id, set()).add(log.recipient_id)
        first[log.url_id] = min(first.get(log.url_id, log.at), log.at)
        last[log.url_id] = max(last.get(log.url_id, log.at), log.at)
    return {
        url_id: UrlStats(
            url_id,
            count,
            len(recipients[url_id]),
            first[url_id],
            last[url_id],
            human_clicks.get(url_id, 0),
            len(human_recipients.get(url_id, ())),
        )
        for url_id, count in clicks.items()
    }


# --- click streams ----------------------------------------------------------------------------


def click_streams(
    delivery_id: str, limit: int = 20, repo: ReportRepository | None = None, traffic: str = "all"
) -> ClickStreams:
    """The ``limit`` most followed paths through the click links, every link-to-link move counted and
    every page the web-tracking tag saw after a click on each link.

    One item read: the tracking workflow keeps the paths, transitions and pages up to date as events
    come in (the pages it names are bounded, so all of them are listed).
    """
    repo = _repo(repo)
    _tracked_delivery(repo, delivery_id)
    counts = repo.click_streams(delivery_id)
    if traffic == "human":
        # Paths and moves of human clicks only; the pages after each link are the web-tracking tag's.
        human = repo.click_streams(delivery_id, human=True)
        counts = ClickStreamCounts(
            human.paths,
            human.other_paths,
            human.transitions,
            human.other_transitions,
            counts.pages,
            counts.other_pages,
        )
    recipients = sum(counts.paths.values()) + counts.other_paths
    ranked = sorted(
        ((key, n) for key, n in counts.paths.items() if n > 0), key=lambda entry: (-entry[1], entry[0])
    )
    paths = [_path(key, n, recipients) for key, n in ranked[:limit]]
    transitions = []
    for key, n in counts.transitions.items():
        before, _, after = key.partition(STREAM_SEPARATOR)
        if n > 0 and after:
            transitions.append(Transition(from_url_id=before, to_url_id=after, count=n))
    transitions.sort(key=lambda move: (-move.count, move.from_url_id, move.to_url_id))
    pages = []
    for key, n in counts.pages.items():
        after_url_id, _, url = key.partition(PAGE_SEPARATOR)
        if n > 0 and url:
            pages.append(PageAfterLink(after_url_id=after_url_id, url=url, views=n))
    pages.sort(key=lambda page: (-page.views, page.after_url_id, page.url))
    return ClickStreams(
        recipients=recipients,
        paths=paths,
        other_recipients=recipients - sum(path.recipients for path in paths),
        transitions=transitions,
        other_transitions=counts.other_transitions,
        pages=pages,
        other_pages=counts.other_pages,
    )


def _path(key: str, recipients: int, total: int) -> ClickPath:
    steps = key.split(STREAM_SEPARATOR)
    cut_short = steps[-1] == STREAM_CUT_SHORT
    return ClickPath(
        url_ids=steps[:-1] if cut_short else steps,
        recipients=recipients,
        share=rate(recipients, total),
        cut_short=cut_short,
    )


# --- hot clicks -------------------------------------------------------------------------------


def hot_clicks(delivery_id: str, repo: ReportRepository | None = None, traffic: str = "all") -> HotClicks:
    """Click links by their share of the delivery's URL events (``traffic="human"``: of the events no
    machine made), and the message annotated with them."""
    from functions.api.rendering import annotate_hot_clicks  # HTML parsing: this route only
    from functions.shared.links import parse_content

    repo = _repo(repo)
    delivery = _tracked_delivery(repo, delivery_id, with_content=True)
    assert delivery.content is not None  # asked for with_content
    # A link whose tracking is off (data-track="none", a rule, or turned off later) is neither listed
    # nor marked: its counts, if any, predate the change and no longer grow.
    urls = [url for url in repo.tracked_urls(delivery_id) if url.tracked]
    stats = repo.url_stats(delivery_id)
    counted = {url.url_id: stats.get(url.url_id, UrlStats(url.url_id)) for url in urls}
    clicks = {
        url_id: (found.human_clicks if traffic == "human" else found.clicks)
        for url_id, found in counted.items()
    }
    total = sum(clicks.values())
    links = sorted(
        (
            HotClickLink(
                url_id=url.url_id,
                url=url.url,
                label=url.label,
                clicks=clicks[url.url_id],
                percent=rate(clicks[url.url_id], total),
            )
            for url in urls
            if url.category == "click"
        ),
        key=lambda link: (-link.clicks, link.label, link.url_id),
    )
    content = parse_content(
        delivery.content.html, delivery.content.text, list(delivery.content.exclude_url_patterns)
    )
    html = annotate_hot_clicks(content, _percent_by_link(content.links(), urls, clicks, total))
    return HotClicks(links=links, html=html)


def _percent_by_link(
    links: Sequence[LinkSpec], urls: Iterable[TrackedUrl], clicks: Mapping[str, int], total: int
) -> Callable[[LinkSpec], float | None]:
    """A link in the message is the tracked URL numbered as it was at registration (first-seen order).

    By position first: a URL relabelled, recategorised or given web-analytics parameters after
    registration is still the same link of the message; else by target, label and category.
    """
    by_position = {link.key: str(number) for number, link in enumerate(links, start=1)}
    by_identity = {(url.url, url.label, url.category): url.url_id for url in urls}

    def percent_for(link: LinkSpec) -> float | None:
        url_id = by_position.get(link.key)
        if url_id not in clicks:
            url_id = by_identity.get(link.key)
        return None if url_id is None or url_id not in clicks else rate(clicks[url_id], total)

    return percent_for


# --- tracking logs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRequest:
    """A page of tracking logs as asked for: filters, a window (``until`` exclusive), order, paging."""

    type: str | None = None
    delivery_id: str | None = None  # the recipient tab's filter
    recipient_id: str | None = None  # the delivery tab's filter
    url_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    order: str = "desc"
    limit: int = 50
    cursor: str | None = None
    traffic: str = "all"  # "human": only the logs no machine made


def delivery_logs(delivery_id: str, request: LogRequest, repo: ReportRepository | None = None) -> LogPage:
    """A page of the delivery's tracking logs, proofs included (flagged ``proof``)."""
    repo = _repo(repo)
    query = delivery_log_query(delivery_id, request)
    start_after = _start_after(query, request.cursor)
    _tracked_delivery(repo, delivery_id)
    logs, next_key = _read_page(repo, query, start_after, request.limit)
    return LogPage(items=[log_item(log) for log in logs], next_cursor=_cursor(query, next_key))


def delivery_log_query(delivery_id: str, request: LogRequest) -> LogQuery:
    """The query behind the delivery's log route: its pages and its complete exports read the same logs."""
    return LogQuery(
        scope="delivery",
        scope_id=delivery_id,
        forward=request.order == "asc",
        since=_iso(request.since),
        until=_iso(request.until),
        types=frozenset({request.type}) if request.type else None,
        recipient_id=request.recipient_id or None,
        url_id=request.url_id or None,
        human_only=request.traffic == "human",
    )


def recipient_logs(
    recipient_id: str, request: LogRequest, repo: ReportRepository | None = None
) -> RecipientLogPage:
    """The recipient's tracking logs across deliveries; logs of deleted deliveries are left out."""
    repo = _repo(repo)
    query = LogQuery(
        scope="recipient",
        scope_id=recipient_id,
        forward=request.order == "asc",
        since=_iso(request.since),
        until=_iso(request.until),
        types=frozenset({request.type}) if request.type else None,
        delivery_id=request.delivery_id or None,
        url_id=request.url_id or None,
        human_only=request.traffic == "human",
    )
    start_after = _start_after(query, request.cursor)
    logs, next_key = _read_page(repo, query, start_after, request.limit)
    labels = repo.delivery_labels({log.delivery_id for log in logs})
    items = [
        RecipientLogItem(**log_item(log).model_dump(), delivery_label=labels[log.delivery_id])
        for log in logs
        if log.delivery_id in labels
    ]
    return RecipientLogPage(items=items, next_cursor=_cursor(query, next_key))


def _read_page(
    repo: ReportRepository, query: LogQuery, positions: Positions, limit: int
) -> tuple[list[TrackingLog], Positions | None]:
    """Up to ``limit`` logs from ``positions`` (merged over the delivery's chains, in order) and the
    positions the next page starts from: None when the page ends the window."""
    if query.since and query.until and query.since >= query.until:
        return [], None
    budget = MAX_ITEMS_READ_PER_PAGE if query.scope == "delivery" else MAX_LOGS_READ_PER_PAGE
    return log_pages.read_page(repo, log_pages.sources(query), positions, limit, budget)


def _fingerprint(query: LogQuery) -> str:
    """Ties a cursor to the query that produced it: another window or filter would misplace it."""
    described = [
        query.scope,
        query.scope_id,
        query.forward,
        query.since,
        query.until,
        sorted(query.types or ()),
        query.delivery_id,
        query.recipient_id,
        query.url_id,
        query.counted_only,
        *(["human"] if query.human_only else []),  # cursors of all traffic stay as they were
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


def _cursor(query: LogQuery, positions: Positions | None) -> str | None:
    """The next page's cursor: where each chain resumes (by its number) and which are done; in the
    recipient scope (one source) the last log returned."""
    if positions is None:
        return None
    fingerprint = _fingerprint(query)
    if query.scope == "delivery":
        after = {_number(name): key.sk for name, key in positions.after.items()}
        done = sorted(_number(n) for n in positions.done)
        return cursors.encode({"q": fingerprint, "c": CHAINED_CURSOR, "a": after, "x": done})
    key = positions.after.get("")
    return cursors.encode(
        {"q": fingerprint, "d": key.delivery_id if key else None, "s": key.sk if key else None}
    )


def _start_after(query: LogQuery, cursor: str | None) -> Positions:
    position = cursors.decode(cursor)
    if position is None:
        return Positions()
    if position.get("q") != _fingerprint(query):
        raise InvalidCursor("the cursor belongs to another query; repeat the same filters with it")
    if query.scope == "delivery":
        if position.get("c") != CHAINED_CURSOR:
            raise InvalidCursor(
                "the cursor was made before tracking logs were stored in chains; start again from the first page"
            )
        return _chain_positions(query, position)
    delivery_id, sk = position.get("d"), position.get("s")
    if delivery_id is None and sk is None:
        return Positions()
    if not isinstance(delivery_id, str) or not isinstance(sk, str):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    return Positions({"": LogKey(delivery_id, sk)})


def _chain_positions(query: LogQuery, position: Mapping[str, Any]) -> Positions:
    partitions = {_number(source.partition or ""): source.partition for source in log_pages.sources(query)}
    after, done = position.get("a"), position.get("x")
    if (
        not isinstance(after, dict)
        or not isinstance(done, list)
        or not all(n in partitions and isinstance(sk, str) for n, sk in after.items())
        or not all(isinstance(n, str) and n in partitions for n in done)
    ):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    return Positions(
        {str(partitions[n]): LogKey(query.scope_id, sk) for n, sk in after.items()},
        frozenset(str(partitions[n]) for n in done),
    )


def _number(partition: str) -> str:
    """A chain's number in a cursor (``c07``): its key without the delivery id, which the route names."""
    return partition.rpartition("#")[2]


def log_item(log: TrackingLog) -> LogItem:
    """A tracking log as every route and export answers it (the contract's LOG)."""
    return LogItem(
        event_id=log.event_id,
        delivery_id=log.delivery_id,
        recipient_id=log.recipient_id,
        type=log.type,
        url_id=log.url_id,
        url=log.url,
        label=log.label,
        at=log.at,
        browser=log.browser,
        os=log.os,
        device=log.device,
        proof=log.proof,
        amount=money(log.amount) if log.amount is not None else None,
        currency=log.currency,
        machine=log.machine,
        machine_reason=log.machine_reason,
    )


def _iso(moment: datetime | None) -> str | None:
    return timeutil.iso(moment) if moment is not None else None


# --- CSV --------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character is neutralised with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def logs_csv(items: Sequence[LogItem], columns: Sequence[str], *, header: bool = True) -> str:
    """RFC 4180 CSV: a header row, CRLF line ends, fields quoted when they hold ``,``, ``"`` or a line end."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    for item in items:
        values = item.model_dump()
        writer.writerow([_cell(values[column]) for column in columns])
    return buffer.getvalue()


# --- the tracking workflow --------------------------------------------------------------------


def workflow_status(limit: int = 20, repo: ReportRepository | None = None) -> WorkflowStatus:
    """The schedule, the newest ``limit`` runs and ``last_run``: the newest run whatever its status
    (a run still going, or one skipped because another held the lock, is the latest news).
    ``last_success_at`` is when the newest successful run finished."""
    repo = _repo(repo)
    runs = repo.runs(limit)
    succeeded = next((run for run in runs if run.status == "succeeded"), None)
    if succeeded is None and len(runs) >= limit:  # older runs exist: look further back, boundedly
        succeeded = repo.latest_run_with_status("succeeded", MAX_RUNS_READ)
    answered = [_run(run) for run in runs]
    return WorkflowStatus(
        schedule=settings().schedule,
        last_run=answered[0] if answered else None,
        last_success_at=succeeded.finished_at if succeeded else None,
        runs=answered,
    )


def _run(run: RunRecord) -> Run:
    return Run(
        id=run.run_id,
        status=run.status,
        trigger=run.trigger,
        started_at=run.started_at,
        finished_at=run.finished_at,
        events_processed=run.events_processed,
        errors=list(run.errors),
        workers=[RunWorker(**worker) for worker in run.workers],
    )


def start_run(now: datetime | None = None, launcher: WorkflowLauncher | None = None) -> RunStarted:
    """Start the tracking workflow now; the run records itself when it starts."""
    run_id = ids.run_id(now or timeutil.now())
    (launcher or launchers.launcher()).launch(run_id)
    return RunStarted(id=run_id)
