"""What the reports read, behind one interface: the DynamoDB implementation and its records.

Every read here is of pre-aggregated items or one bounded page of tracking logs; nothing grows with the
number of events except the tracking logs' reads (``query_logs``, ``chain_items``), whose callers bound
them. ``tests/fakes_reports.py`` is the
in-memory implementation the unit tests use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pynamodb.exceptions import DoesNotExist

from functions.shared import log_chain_store, recipient_logs
from functions.shared.log_chain_store import ChainItems
from functions.shared.models import (
    CLICK_STREAMS_SK,
    DELIVERY_SK,
    HOUR_PREFIX,
    HUMAN_CLICK_STREAMS_SK,
    RUNS_PK,
    SENDS_SK,
    STATS_SK,
    URL_STATS_PREFIX,
    ClickStreamsModel,
    DeliveryModel,
    DeliveryStatsModel,
    HourStatsModel,
    RunModel,
    SendCountsModel,
    TrackedUrlModel,
    TrackingLogModel,
    UrlStatsModel,
)

# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryContent:
    html: str
    text: str | None
    exclude_url_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    label: str
    track_opens: bool
    track_clicks: bool
    content: DeliveryContent | None = None  # read only when asked for: the HTML can be large


@dataclass(frozen=True)
class SendCounts:
    sent: int = 0
    failed: int = 0
    domains: Mapping[str, int] = field(default_factory=dict)  # email domain -> messages sent
    other_domains: int = 0  # messages sent to domains beyond those ``domains`` names (limits.py)


@dataclass(frozen=True)
class DeliveryStats:
    opens: int = 0
    total_opens: int = 0
    clicks: int = 0
    person_clicks: int = 0
    total_clicks: int = 0
    opt_outs: int = 0
    mirror_page_views: int = 0
    page_views: int = 0
    transactions: int = 0
    transaction_amount: Mapping[str, str] = field(default_factory=dict)  # currency -> exact decimal sum
    # {"browser"|"os"|"device"|"domain": {name: {"opens": n, "clicks": n}}}
    breakdowns: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    # What each breakdown counts beyond the names it keeps (limits.MAX_BREAKDOWN_NAMES):
    # {"browser"|"os"|"device"|"domain": {"opens": n, "clicks": n}}
    other_breakdowns: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Human traffic: the counters above over hits no machine made, and the breakdowns likewise.
    human: Mapping[str, int] = field(default_factory=dict)
    human_breakdowns: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    human_other_breakdowns: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # {"total_opens": n, "total_clicks": n, "by_kind": {kind: logged hits}}
    machine: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HourCount:
    hour: str
    opens: int
    clicks: int
    human_opens: int = 0
    human_clicks: int = 0


@dataclass(frozen=True)
class UrlStats:
    url_id: str
    clicks: int = 0
    distinct_clicks: int = 0
    first_click: str | None = None
    last_click: str | None = None
    human_clicks: int = 0
    human_distinct_clicks: int = 0


@dataclass(frozen=True)
class ClickStreamCounts:
    """The workflow's click-streams item: recipients per path, moves per transition, and the rest."""

    paths: Mapping[str, int] = field(default_factory=dict)  # "1>4>2" -> recipients; last step "…": cut short
    other_paths: int = 0  # recipients whose path is beyond the item's named paths
    transitions: Mapping[str, int] = field(default_factory=dict)  # "1>4" -> moves
    other_transitions: int = 0
    pages: Mapping[str, int] = field(default_factory=dict)  # "<url_id>\u241f<page_url>" -> page views
    other_pages: int = 0  # page views beyond the item's named (link, page) keys


@dataclass(frozen=True)
class TrackedUrl:
    url_id: str
    url: str
    label: str
    category: str
    tracked: bool


@dataclass(frozen=True)
class TrackingLog:
    delivery_id: str
    sk: str  # "<at>#<event_id>": the position in both the table and the by-recipient index
    event_id: str
    recipient_id: str
    type: str
    url_id: str | None
    url: str | None
    label: str | None
    at: str
    browser: str | None
    os: str | None
    device: str | None
    proof: bool = False
    counted: bool = True
    amount: str | None = None  # transactions: a decimal string
    currency: str | None = None
    machine: str | None = None  # apple_mpp, scanner or bot; None for a person (machine.py)
    machine_reason: str | None = None  # the signal that decided; None for a person


@dataclass(frozen=True)
class LogKey:
    """Where a tracking log sits: enough to resume a query right after it."""

    delivery_id: str
    sk: str


@dataclass(frozen=True)
class LogQuery:
    """One window of tracking logs: by delivery (the table) or by recipient (``recipient_logs``).

    ``since`` is inclusive and ``until`` exclusive, both ISO times compared with the sort key. The other
    fields are filters: they narrow what is returned, not what is read. A delivery's logs lie in
    chains (``log_chains.chains``): ``chain_reader`` reads the one named by ``partition``, and
    ``log_pages`` merges them.
    """

    scope: Literal["delivery", "recipient"]
    scope_id: str
    forward: bool = False
    since: str | None = None
    until: str | None = None
    types: frozenset[str] | None = None
    delivery_id: str | None = None  # only with the recipient scope
    recipient_id: str | None = None  # only with the delivery scope
    url_id: str | None = None
    counted_only: bool = False
    human_only: bool = False  # only the logs no machine made (``machine`` absent)
    partition: str | None = None  # the delivery scope: the chain (partition key) this query reads

    @property
    def filtered(self) -> bool:
        """Whether reading may discard logs. Not ``delivery_id``: in the recipient scope it chooses
        whose keys are read (that delivery's), so every log read is returned."""
        return bool(self.types or self.recipient_id or self.url_id or self.counted_only or self.human_only)


@dataclass(frozen=True)
class LogChunk:
    """One DynamoDB Query's answer: the matching logs among the ``read`` items it evaluated.

    ``last_evaluated`` is None when the window is exhausted; otherwise reading resumes after it.
    """

    items: list[TrackingLog]
    read: int
    last_evaluated: LogKey | None


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    status: str
    trigger: str | None
    started_at: str
    finished_at: str | None
    events_processed: int
    errors: tuple[str, ...] = ()
    workers: tuple[dict[str, Any], ...] = ()  # {"shards", "events_processed", "status"}


# --- the interface ----------------------------------------------------------------------------


class ReportRepository(Protocol):
    def delivery(self, delivery_id: str, *, with_content: bool = False) -> Delivery | None: ...

    def delivery_labels(self, delivery_ids: Iterable[str]) -> dict[str, str]:
        """Labels of the deliveries that still exist, by id."""
        ...

    def send_counts(self, delivery_id: str) -> SendCounts: ...

    def delivery_stats(self, delivery_id: str) -> DeliveryStats: ...

    def hours(self, delivery_id: str) -> list[HourCount]:
        """Hourly counts, oldest first."""
        ...

    def url_stats(self, delivery_id: str) -> dict[str, UrlStats]: ...

    def click_streams(self, delivery_id: str, *, human: bool = False) -> ClickStreamCounts:
        """The click-streams item; ``human``: the one over human clicks only (no pages)."""
        ...

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]: ...

    def query_logs(self, query: LogQuery, start_after: LogKey | None, max_read: int) -> LogChunk:
        """The recipient scope: evaluates at most ``max_read`` logs after ``start_after`` in the
        query's order (``start_after`` need not be one of them: reading starts after its place)."""
        ...

    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        """The delivery scope: one Query of a chain's items (``log_chain_store.query_items``), which
        ``chain_reader`` turns into logs."""
        ...

    def runs(self, limit: int) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first."""
        ...

    def latest_run_with_status(self, status: str, max_read: int) -> RunRecord | None:
        """The newest run with ``status`` among the newest ``max_read`` runs."""
        ...


# --- DynamoDB ---------------------------------------------------------------------------------

_SUMMARY_ATTRIBUTES = [
    "delivery_id",
    "sk",
    "label",
    "track_opens",
    "track_clicks",
    "deleted_at",
]  # PynamoDB wants a list


def _int(value: Any) -> int:
    return int(value or 0)


def _plain(value: Any) -> dict[str, Any]:
    """A raw ``MapAttribute`` as nested dicts, whichever way PynamoDB handed it over."""
    if value is None:
        return {}
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    return dict(value)


def _counts(rows: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    return {name: {k: _int(v) for k, v in _plain(row).items()} for name, row in rows.items()}


def _machine(machine: Mapping[str, Any]) -> dict[str, Any]:
    by_kind = {kind: _int(n) for kind, n in _plain(machine.get("by_kind")).items()}
    return {
        "total_opens": _int(machine.get("total_opens")),
        "total_clicks": _int(machine.get("total_clicks")),
        "by_kind": by_kind,
    }


class DynamoReportRepository:
    """Reads through the PynamoDB models; table names come from the environment at first use."""

    def delivery(self, delivery_id: str, *, with_content: bool = False) -> Delivery | None:
        try:
            item = DeliveryModel.get(
                delivery_id, DELIVERY_SK, attributes_to_get=None if with_content else _SUMMARY_ATTRIBUTES
            )
        except DoesNotExist:
            return None
        if item.deleted_at:
            return None
        content = None
        if with_content:
            content = DeliveryContent(
                item.html, item.text, tuple(str(p) for p in item.exclude_url_patterns or ())
            )
        return Delivery(
            item.delivery_id, item.label, bool(item.track_opens), bool(item.track_clicks), content
        )

    def delivery_labels(self, delivery_ids: Iterable[str]) -> dict[str, str]:
        keys = [(delivery_id, DELIVERY_SK) for delivery_id in sorted(set(delivery_ids))]
        if not keys:
            return {}
        items = DeliveryModel.batch_get(keys, attributes_to_get=["delivery_id", "sk", "label", "deleted_at"])
        return {item.delivery_id: item.label for item in items if not item.deleted_at}

    def send_counts(self, delivery_id: str) -> SendCounts:
        try:
            item = SendCountsModel.get(delivery_id, SENDS_SK)
        except DoesNotExist:
            return SendCounts()
        domains = {name: _int(sent) for name, sent in _plain(item.domains).items()}
        return SendCounts(_int(item.sent), _int(item.failed), domains, _int(item.other_domains))

    def delivery_stats(self, delivery_id: str) -> DeliveryStats:
        try:
            item = DeliveryStatsModel.get(delivery_id, STATS_SK)
        except DoesNotExist:
            return DeliveryStats()
        breakdowns = {dimension: _counts(_plain(rows)) for dimension, rows in _plain(item.breakdowns).items()}
        return DeliveryStats(
            opens=_int(item.opens),
            total_opens=_int(item.total_opens),
            clicks=_int(item.clicks),
            person_clicks=_int(item.person_clicks),
            total_clicks=_int(item.total_clicks),
            opt_outs=_int(item.opt_outs),
            mirror_page_views=_int(item.mirror_page_views),
            page_views=_int(item.page_views),
            transactions=_int(item.transactions),
            transaction_amount={
                currency: str(total) for currency, total in _plain(item.transaction_amount).items()
            },
            breakdowns=breakdowns,
            other_breakdowns=_counts(_plain(item.other_breakdowns)),
            human={name: _int(n) for name, n in _plain(item.human).items()},
            human_breakdowns={
                dimension: _counts(_plain(rows)) for dimension, rows in _plain(item.human_breakdowns).items()
            },
            human_other_breakdowns=_counts(_plain(item.human_other_breakdowns)),
            machine=_machine(_plain(item.machine)),
        )

    def hours(self, delivery_id: str) -> list[HourCount]:
        items = HourStatsModel.query(delivery_id, HourStatsModel.sk.startswith(HOUR_PREFIX))
        return [
            HourCount(
                item.hour,
                _int(item.opens),
                _int(item.clicks),
                _int(item.human_opens),
                _int(item.human_clicks),
            )
            for item in items
        ]

    def url_stats(self, delivery_id: str) -> dict[str, UrlStats]:
        items = UrlStatsModel.query(delivery_id, UrlStatsModel.sk.startswith(URL_STATS_PREFIX))
        return {
            item.url_id: UrlStats(
                item.url_id,
                _int(item.clicks),
                _int(item.distinct_clicks),
                item.first_click,
                item.last_click,
                _int(item.human_clicks),
                _int(item.human_distinct_clicks),
            )
            for item in items
        }

    def click_streams(self, delivery_id: str, *, human: bool = False) -> ClickStreamCounts:
        try:
            item = ClickStreamsModel.get(delivery_id, HUMAN_CLICK_STREAMS_SK if human else CLICK_STREAMS_SK)
        except DoesNotExist:
            return ClickStreamCounts()
        return ClickStreamCounts(
            paths={key: _int(count) for key, count in _plain(item.paths).items()},
            other_paths=_int(item.other_paths),
            transitions={key: _int(count) for key, count in _plain(item.transitions).items()},
            other_transitions=_int(item.other_transitions),
            pages={key: _int(count) for key, count in _plain(item.pages).items()},
            other_pages=_int(item.other_pages),
        )

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]:
        return [
            TrackedUrl(item.url_id, item.url, item.label, item.category, bool(item.tracked))
            for item in TrackedUrlModel.query(delivery_id)
        ]

    def query_logs(self, query: LogQuery, start_after: LogKey | None, max_read: int) -> LogChunk:
        if query.scope != "recipient":
            raise ValueError("a delivery's tracking logs are read chain by chain (chain_reader)")
        return _recipient_chunk(query, start_after, max_read)

    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        return log_chain_store.query_items(chain, key, forward=forward, limit=limit, inclusive=inclusive)

    def runs(self, limit: int) -> list[RunRecord]:
        items = RunModel.query(RUNS_PK, scan_index_forward=False, limit=limit, page_size=limit)
        return [_run(item) for item in items]

    def latest_run_with_status(self, status: str, max_read: int) -> RunRecord | None:
        results = RunModel.query(
            RUNS_PK, scan_index_forward=False, filter_condition=RunModel.status == status, page_size=100
        )
        for page in results.page_iter:
            found = page.get("Items")
            if found:
                return _run(RunModel.from_raw_data(found[0]))
            if results.page_iter.total_scanned_count >= max_read:
                return None
        return None


def _recipient_chunk(query: LogQuery, start_after: LogKey | None, max_read: int) -> LogChunk:
    """Up to ``max_read`` of the recipient's logs after ``start_after``, across deliveries in time order.

    The keys come from the recipient's state items and the pages they spilled (``recipient_logs``):
    each delivery's share gives its first ``max_read`` and two more keys from the position on (one may
    be the position itself, and one more tells there are more), merged in (sort key, delivery) order;
    only the logs of this chunk are read, with BatchGetItem.
    """
    lo, hi = query.since, query.until
    if start_after is not None and query.forward:
        lo = max(lo or "", start_after.sk)
    elif start_after is not None:
        hi = min(hi, start_after.sk) if hi else start_after.sk
    keys = sorted(
        (
            (sk, share.delivery_id, share.partition)
            for share in recipient_logs.log_shares(query.scope_id, query.delivery_id)
            for sk in recipient_logs.window(share, forward=query.forward, lo=lo, hi=hi, limit=max_read + 2)
            if (query.since is None or sk >= query.since) and (query.until is None or sk < query.until)
        ),
        reverse=not query.forward,
    )
    if start_after is not None:
        position = (start_after.sk, start_after.delivery_id)
        keys = [key for key in keys if (key[:2] > position if query.forward else key[:2] < position)]
    evaluated = keys[:max_read]
    found = recipient_logs.load((partition, sk) for sk, _, partition in evaluated)
    logs = [log_record(found[(partition, sk)]) for sk, _, partition in evaluated if (partition, sk) in found]
    last = LogKey(evaluated[-1][1], evaluated[-1][0]) if len(keys) > max_read else None
    return LogChunk([log for log in logs if matches(query, log)], len(evaluated), last)


def matches(query: LogQuery, log: TrackingLog) -> bool:
    """The query's filters (not its window) applied to a log read by key or decoded from a chain."""
    return (
        (not query.types or log.type in query.types)
        and (not query.delivery_id or log.delivery_id == query.delivery_id)
        and (not query.recipient_id or log.recipient_id == query.recipient_id)
        and (not query.url_id or log.url_id == query.url_id)
        and (not query.counted_only or log.counted)
        and (not query.human_only or log.machine is None)
    )


def log_record(item: TrackingLogModel) -> TrackingLog:
    """A stored (or decoded) tracking log as the reports read it."""
    return TrackingLog(
        delivery_id=item.delivery_id,
        sk=item.sk,
        event_id=item.event_id,
        recipient_id=item.recipient_id,
        type=item.type,
        url_id=item.url_id,
        url=item.url,
        label=item.label,
        at=item.at,
        browser=item.browser,
        os=item.os,
        device=item.device,
        proof=bool(item.proof),
        counted=item.counted is not False,
        amount=item.amount,
        currency=item.currency,
        machine=item.machine,
        machine_reason=item.machine_reason,
    )


def _run(item: RunModel) -> RunRecord:
    return RunRecord(
        run_id=item.sk,
        status=item.status,
        trigger=item.trigger,
        started_at=item.started_at,
        finished_at=item.finished_at,
        events_processed=_int(item.events_processed),
        errors=tuple(str(e) for e in item.errors or ()),
        workers=tuple(_run_worker(worker) for worker in item.workers or ()),
    )


def _run_worker(worker: Any) -> dict[str, Any]:
    values = worker.as_dict() if hasattr(worker, "as_dict") else dict(worker)
    return {
        "shards": [str(shard) for shard in values.get("shards") or ()],
        "events_processed": _int(values.get("events_processed")),
        "status": str(values.get("status") or "failed"),
    }


_configured: ReportRepository | None = None


def configure(repository: ReportRepository | None) -> None:
    """Replace the repository the routes use (tests; None restores DynamoDB)."""
    global _configured
    _configured = repository


def repository() -> ReportRepository:
    return _configured if _configured is not None else DynamoReportRepository()
