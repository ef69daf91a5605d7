"""An in-memory ReportRepository that answers like DynamoDB would, for the report unit tests.

``query_logs`` mimics one DynamoDB Query of one partition key (``query.partition``, or the recipient's
index): it evaluates at most ``max_read`` items in key order after the start key's place, applies the filters to those, and returns a LastEvaluatedKey whenever it stopped because of
the limit (even when nothing is left, as DynamoDB may).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from functions.api.report_repository import (
    Delivery,
    DeliveryContent,
    DeliveryStats,
    HourCount,
    LogChunk,
    LogKey,
    LogQuery,
    RunRecord,
    SendCounts,
    TrackedUrl,
    TrackingLog,
    UrlStats,
)
from functions.shared.tables import tracking_log_partition


@dataclass
class FakeReports:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    sends: dict[str, SendCounts] = field(default_factory=dict)
    stats: dict[str, DeliveryStats] = field(default_factory=dict)
    hour_counts: dict[str, list[HourCount]] = field(default_factory=dict)
    url_counts: dict[str, dict[str, UrlStats]] = field(default_factory=dict)
    urls: dict[str, list[TrackedUrl]] = field(default_factory=dict)
    logs: list[TrackingLog] = field(default_factory=list)
    run_records: list[RunRecord] = field(default_factory=list)
    queries: list[tuple[LogQuery, LogKey | None, int, int]] = field(
        default_factory=list
    )  # query, start, max, read

    # --- seeding ------------------------------------------------------------------------------

    def add_delivery(
        self,
        delivery_id: str,
        label: str = "Newsletter",
        *,
        track_opens: bool = True,
        track_clicks: bool = True,
        html: str = "<p>hello</p>",
        text: str | None = None,
    ) -> None:
        content = DeliveryContent(html, text)
        self.deliveries[delivery_id] = Delivery(delivery_id, label, track_opens, track_clicks, content)

    def add_log(
        self,
        delivery_id: str,
        event_id: str,
        at: str,
        *,
        recipient_id: str = "r1",
        type: str = "open",
        url_id: str | None = None,
        url: str | None = None,
        label: str | None = None,
        proof: bool = False,
        counted: bool = True,
        browser: str | None = "Chrome",
        machine: str | None = None,
        machine_reason: str | None = None,
    ) -> TrackingLog:
        log = TrackingLog(
            delivery_id=delivery_id,
            sk=f"{at}#{event_id}",
            event_id=event_id,
            recipient_id=recipient_id,
            type=type,
            url_id=url_id,
            url=url,
            label=label,
            at=at,
            browser=browser,
            os="Linux",
            device="desktop",
            proof=proof,
            counted=counted,
            machine=machine,
            machine_reason=machine_reason,
        )
        self.logs.append(log)
        return log

    @property
    def logs_read(self) -> int:
        return sum(read for *_, read in self.queries)

    # --- ReportRepository ---------------------------------------------------------------------

    def delivery(self, delivery_id: str, *, with_content: bool = False) -> Delivery | None:
        delivery = self.deliveries.get(delivery_id)
        if delivery is None or with_content:
            return delivery
        return replace(delivery, content=None)

    def delivery_labels(self, delivery_ids: Iterable[str]) -> dict[str, str]:
        return {d: self.deliveries[d].label for d in set(delivery_ids) if d in self.deliveries}

    def send_counts(self, delivery_id: str) -> SendCounts:
        return self.sends.get(delivery_id, SendCounts())

    def delivery_stats(self, delivery_id: str) -> DeliveryStats:
        return self.stats.get(delivery_id, DeliveryStats())

    def hours(self, delivery_id: str) -> list[HourCount]:
        return sorted(self.hour_counts.get(delivery_id, []), key=lambda h: h.hour)

    def url_stats(self, delivery_id: str) -> dict[str, UrlStats]:
        return dict(self.url_counts.get(delivery_id, {}))

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrl]:
        return sorted(self.urls.get(delivery_id, []), key=lambda u: u.url_id)

    def query_logs(self, query: LogQuery, start_after: LogKey | None, max_read: int) -> LogChunk:
        assert max_read >= 1, "DynamoDB rejects a Limit below 1"
        if query.scope == "delivery":
            assert query.partition is not None, "the table is read one partition key at a time"
            in_scope = [
                log
                for log in self.logs
                if tracking_log_partition(log.delivery_id, log.recipient_id) == query.partition
            ]
        else:
            in_scope = [log for log in self.logs if log.recipient_id == query.scope_id]
        window = [
            log
            for log in in_scope
            if (query.since is None or log.sk >= query.since)
            and (query.until is None or log.sk < query.until)
        ]
        ordered = sorted(window, key=_place, reverse=not query.forward)
        if start_after is not None:  # as DynamoDB: after the start key's place, whether it exists or not
            start = (start_after.sk, start_after.delivery_id)
            ordered = [
                log for log in ordered if (_place(log) > start if query.forward else _place(log) < start)
            ]
        evaluated = ordered[:max_read]
        limited = len(evaluated) == max_read
        last = LogKey(evaluated[-1].delivery_id, evaluated[-1].sk) if limited else None
        self.queries.append((query, start_after, max_read, len(evaluated)))
        return LogChunk([log for log in evaluated if _matches(query, log)], len(evaluated), last)

    def runs(self, limit: int) -> list[RunRecord]:
        return sorted(self.run_records, key=lambda r: r.run_id, reverse=True)[:limit]

    def latest_run_with_status(self, status: str, max_read: int) -> RunRecord | None:
        newest = sorted(self.run_records, key=lambda r: r.run_id, reverse=True)[:max_read]
        return next((run for run in newest if run.status == status), None)


def _place(log: TrackingLog) -> tuple[str, str]:
    return (log.sk, log.delivery_id)


def _matches(query: LogQuery, log: TrackingLog) -> bool:
    return (
        (not query.types or log.type in query.types)
        and (query.delivery_id is None or log.delivery_id == query.delivery_id)
        and (query.recipient_id is None or log.recipient_id == query.recipient_id)
        and (query.url_id is None or log.url_id == query.url_id)
        and (not query.counted_only or log.counted)
        and (not query.human_only or log.machine is None)
    )
