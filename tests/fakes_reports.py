"""An in-memory ReportRepository that answers like DynamoDB would, for the report unit tests.

A delivery's logs are kept as DynamoDB would hold them: in chains (``log_chains``), each log written
into its recipient's chain with ``log_chains.merged`` as the tracking workflow writes it (``add_log``),
or any write stopped after any put (``write_chain``: what a crash leaves). ``chain_items`` mimics one
Query of a chain's items; ``query_logs`` (the recipient scope) one Query of the recipient's logs: it
evaluates at most ``max_read`` logs in key order after the start key's place, applies the filters to
those, and returns a LastEvaluatedKey whenever it stopped because of the limit (even when nothing is
left, as DynamoDB may). ``queries`` records both: (query, start, limit, items or logs read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

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
from functions.shared import log_chains
from functions.shared.log_chain_store import ChainItems
from functions.shared.log_chains import ChainItem
from functions.shared.models import TrackingLogModel


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
    chains: dict[str, dict[str, ChainItem]] = field(default_factory=dict)  # chain -> start -> item
    puts: int = 0  # chain items put

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
        write: bool = True,
    ) -> TrackingLog:
        """A log of the delivery, written into its recipient's chain (unless ``write`` is False: the
        caller writes it, with others, through ``write_chain``)."""
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
        return self.keep(log, write=write)

    def keep(self, log: TrackingLog, *, write: bool = True) -> TrackingLog:
        """A log of any fields, written into its recipient's chain (unless ``write`` is False)."""
        self.logs.append(log)
        if write:
            self.write_chain(log_chains.chain_of(log.delivery_id, log.recipient_id), [stored(log)])
        return log

    def write_chain(
        self,
        chain: str,
        upserts: Sequence[TrackingLogModel],
        removed: Sequence[str] = (),
        *,
        stop_after: int | None = None,
    ) -> bool:
        """Write logs into a chain as the tracking workflow does (``log_chains.merged``), each put
        conditional on the version it read; ``stop_after``: stop after that many puts (a crash).
        Whether the write completed."""
        keys = [str(log.sk) for log in upserts] + list(removed)
        if not keys:
            return True
        items = self.chains.setdefault(chain, {})
        starts = sorted(items)
        low, high = min(keys), max(keys)
        owner = [start for start in starts if start <= low][-1:]
        covering = owner + [start for start in starts if low < start <= high]
        after = [start for start in starts if start > high]
        write = log_chains.merged(
            chain, [items[start] for start in covering], after[0] if after else None, upserts, removed
        )
        done = 0
        for step in write.steps:
            for item in step:
                if stop_after is not None and done >= stop_after:
                    return False
                stored_before = items.get(item.start)
                assert (stored_before.version if stored_before else 0) == item.version, "a conditional put"
                items[item.start] = replace(item, version=item.version + 1)
                done += 1
                self.puts += 1
        return True

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

    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        assert limit >= 1, "DynamoDB rejects a Limit below 1"
        starts = sorted(self.chains.get(chain, {}), reverse=not forward)
        if key is not None:
            starts = [
                start
                for start in starts
                if (start > key if forward else start < key) or (inclusive and start == key)
            ]
        found = [self.chains[chain][start] for start in starts[:limit]]
        delivery = log_chains.delivery_of(chain)
        asked = LogQuery("delivery", delivery, forward=forward, partition=chain)
        self.queries.append((asked, LogKey(delivery, key) if key is not None else None, limit, len(found)))
        return ChainItems(found, len(found) == limit)

    def query_logs(self, query: LogQuery, start_after: LogKey | None, max_read: int) -> LogChunk:
        assert max_read >= 1, "DynamoDB rejects a Limit below 1"
        assert query.scope == "recipient", "a delivery's logs are read chain by chain"
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


def stored(log: TrackingLog) -> TrackingLogModel:
    """A log as the tracking workflow writes it into its chain."""
    return TrackingLogModel(partition=log_chains.chain_of(log.delivery_id, log.recipient_id), **asdict(log))


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
