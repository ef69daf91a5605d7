"""One batch of the tracking workflow, as a pure computation.

Given raw events and the current indicator state they touch, produce the tracking logs and the new
state items. Nothing here does I/O: the workflow loads what ``state_keys`` names, calls
``consolidate``, and writes what it returns, idempotently (every output is a whole-item put).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from pynamodb.models import Model

from functions.shared import opt_out_feed, recipient_log_pages, timeutil
from functions.shared.limits import (
    MAX_BREAKDOWN_NAMES,
    MAX_CURRENCIES,
    MAX_NAME_BYTES,
    MAX_PAGE_URL_BYTES,
    MAX_PATH,
    MAX_STREAM_ENTRIES,
    MAX_STREAM_PAGE_BYTES,
    MAX_STREAM_PAGES,
    MAX_STREAM_STEPS,
    utf8_prefix,
)
from functions.shared.machine import BURST_REASON, DEFAULT_BURST_SECONDS, SCANNER
from functions.shared.models import (
    CLICK_STREAMS_SK,
    HOUR_PREFIX,
    HUMAN_CLICK_STREAMS_SK,
    PAGE_SEPARATOR,
    PERSON_STATE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    STATS_SK,
    STREAM_CUT_SHORT,
    STREAM_SEPARATOR,
    URL_STATS_PREFIX,
    ClickStreamsModel,
    DeliveryStatsModel,
    HourStatsModel,
    PersonStateModel,
    RawEventModel,
    RecipientLogPageModel,
    RecipientStateModel,
    TrackedUrlModel,
    TrackingLogModel,
    UrlStatsModel,
)
from functions.shared.raw_events import ONE_CLICK
from functions.shared.tables import tracking_log_partition
from functions.shared.useragent import parse_user_agent

# Every bound on what a map of an indicator item names is in ``functions/shared/limits.py``, with the
# arithmetic that keeps the items below DynamoDB's 400 KB whatever the hits say.
BREAKDOWN_MEASURES = ("opens", "clicks")
WEB_KINDS = frozenset({"page", "transaction"})  # raw events of the web-tracking tag
KINDS = frozenset({"open", "click", *WEB_KINDS})
_NAMES = ("event_id", "kind", "delivery_id", "recipient_id", "at")  # strings every raw event holds
_OPTIONAL_NAMES = (
    "url_id",
    "user_agent",
    "person_id",
    "site_id",
    "via_url_id",
    "page_url",
    "amount",
    "currency",
    "source",
)

StateKey = tuple[str, str]  # (delivery_id, sk) in the indicators table
LogKey = tuple[str, str]  # (partition, sk) in the tracking-logs table: ``log_key``
HUMAN_FIELDS = (
    "opens",
    "total_opens",
    "clicks",
    "person_clicks",
    "total_clicks",
    "opt_outs",
    "mirror_page_views",
)
MAX_RECENT_HITS = 100  # hits with a client key a recipient's state keeps for a later honeypot hit
MAX_HONEYPOT_HITS = 20  # honeypot hits a recipient's state keeps for later hits


def stats_key(delivery_id: str) -> StateKey:
    return (delivery_id, STATS_SK)


def url_key(delivery_id: str, url_id: str) -> StateKey:
    return (delivery_id, URL_STATS_PREFIX + url_id)


def hour_key(delivery_id: str, at: str) -> StateKey:
    return (delivery_id, HOUR_PREFIX + at[:13])


def recipient_key(delivery_id: str, recipient_id: str) -> StateKey:
    return (delivery_id, RECIPIENT_STATE_PREFIX + recipient_id)


def person_key(delivery_id: str, person_id: str) -> StateKey:
    return (delivery_id, PERSON_STATE_PREFIX + person_id)


def streams_key(delivery_id: str) -> StateKey:
    return (delivery_id, CLICK_STREAMS_SK)


def human_streams_key(delivery_id: str) -> StateKey:
    return (delivery_id, HUMAN_CLICK_STREAMS_SK)


def state_keys(events: Iterable[RawEventModel]) -> set[StateKey]:
    """Every indicator item a batch of events may read or write."""
    keys: set[StateKey] = set()
    for event in events:
        # Every log, proofs and visits included, is listed in its recipient's state (``keep_log``).
        keys.add(recipient_key(event.delivery_id, event.recipient_id))
        if event.proof:
            continue
        if event.kind in WEB_KINDS:
            # A visit counts on the delivery only: not an open, a click or a step of the recipient.
            keys.add(stats_key(event.delivery_id))
            if event.kind == "page" and event.via_url_id:
                keys.add(streams_key(event.delivery_id))
            continue
        keys.add(stats_key(event.delivery_id))
        if event.honeypot:
            continue
        keys.add(hour_key(event.delivery_id, event.at))
        if event.url_id:
            keys.add(url_key(event.delivery_id, event.url_id))
            keys.add(person_key(event.delivery_id, _person(event)))
            keys.add(streams_key(event.delivery_id))
            keys.add(human_streams_key(event.delivery_id))
    return keys


def fault(event: RawEventModel, log_ttl_days: int) -> str | None:
    """Why the workflow cannot consolidate this raw event (a field missing or garbled, a time that
    does not parse, a kind it does not know), or None. The workflow runs ``consolidate`` only on
    events without: a batch updates the run's items in place, so it must not fail halfway for one.

    With these checks passed, nothing a batch computes from the event can raise: the keys join
    strings, the tracking log's expiry adds the TTL to a time that parses (and stays in range), an
    amount is parsed with its errors caught (``_amount``).
    """
    values = event.attribute_values  # a plain dict: reading the attributes one by one costs more
    for name in _NAMES:
        value = values.get(name)
        if not isinstance(value, str) or not value:
            return f"{name} is {'missing' if value is None else repr(value)[:100]}"
    for name in _OPTIONAL_NAMES:
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} is {repr(value)[:100]}"
    if values["kind"] not in KINDS:
        return f"kind {values['kind'][:100]!r} is not one the workflow knows"
    checks = (
        ("at", lambda: timeutil.parse(values["at"]) + timedelta(days=log_ttl_days)),
        ("user_agent", lambda: parse_user_agent(values.get("user_agent"))),
    )
    for name, check in checks:
        try:
            check()
        except Exception as error:  # whatever it holds, the run goes on without it
            return f"{name} {str(values.get(name))[:100]!r}: {type(error).__name__}: {error}"[:1_000]
    return None


def keep_log(recipient: RecipientStateModel, sk: str) -> list[RecipientLogPageModel]:
    """List a tracking log's sort key in its recipient's state, in order, once; past
    ``MAX_RECIPIENT_LOGS`` the list spills to a page, returned to write with the state."""
    return recipient_log_pages.keep(recipient, sk)


def _person(event: RawEventModel) -> str:
    # A click always carries a person (the redirect sets the cookie); fall back to the recipient.
    return event.person_id or f"recipient:{event.recipient_id}"


@dataclass
class Outcome:
    items: list[Model] = field(default_factory=list)
    events: int = 0  # raw events consolidated (logged)
    # Tracking logs of earlier batches found to be a scanner's (the honeypot burst): written again,
    # with the indicator items, through the pending batch.
    rewritten: list[TrackingLogModel] = field(default_factory=list)


class _State:
    """The indicator items of one batch, created on first touch."""

    def __init__(
        self, loaded: Mapping[StateKey, Model], domains: Mapping[tuple[str, str], str | None]
    ) -> None:
        self.items: dict[StateKey, Model] = dict(loaded)
        self.touched: dict[StateKey, Model] = {}
        self._domains = domains
        self._pages: dict[str, _StreamCounts] = {}

    def _get(self, key: StateKey, create: Any) -> Any:
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = create()
        self.touched[key] = item
        return item

    def stats(self, delivery_id: str) -> DeliveryStatsModel:
        key = stats_key(delivery_id)
        return self._get(key, lambda: DeliveryStatsModel(delivery_id=delivery_id, sk=key[1], breakdowns={}))

    def url(self, delivery_id: str, url_id: str) -> UrlStatsModel:
        key = url_key(delivery_id, url_id)
        return self._get(key, lambda: UrlStatsModel(delivery_id=delivery_id, sk=key[1], url_id=url_id))

    def hour(self, delivery_id: str, at: str) -> HourStatsModel:
        key = hour_key(delivery_id, at)
        return self._get(
            key, lambda: HourStatsModel(delivery_id=delivery_id, sk=key[1], hour=timeutil.hour_of(at))
        )

    def recipient(self, delivery_id: str, recipient_id: str) -> RecipientStateModel:
        key = recipient_key(delivery_id, recipient_id)
        return self._get(
            key,
            lambda: RecipientStateModel(
                delivery_id=delivery_id,
                sk=key[1],
                recipient_id=recipient_id,
                email_domain=self._domains.get((delivery_id, recipient_id)),
            ),
        )

    def human_streams(self, delivery_id: str) -> ClickStreamsModel:
        key = human_streams_key(delivery_id)
        return self._get(
            key, lambda: ClickStreamsModel(delivery_id=delivery_id, sk=key[1], paths={}, transitions={})
        )

    def streams(self, delivery_id: str) -> ClickStreamsModel:
        key = streams_key(delivery_id)
        return self._get(
            key, lambda: ClickStreamsModel(delivery_id=delivery_id, sk=key[1], paths={}, transitions={})
        )

    def page_counts(self, delivery_id: str) -> _StreamCounts:
        """The pages after each link in the delivery's click streams, counted here until ``settle_pages``."""
        counts = self._pages.get(delivery_id)
        if counts is None:
            streams = self.streams(delivery_id)
            counts = self._pages[delivery_id] = _StreamCounts(
                streams.pages, streams.other_pages, cap=MAX_STREAM_PAGES
            )
        return counts

    def settle_pages(self) -> None:
        for delivery_id, counts in self._pages.items():
            streams = self.streams(delivery_id)
            streams.pages, streams.other_pages = counts.settled(), counts.other

    def person(self, delivery_id: str, person_id: str) -> PersonStateModel:
        key = person_key(delivery_id, person_id)
        return self._get(key, lambda: PersonStateModel(delivery_id=delivery_id, sk=key[1]))

    def person_is_new(self, delivery_id: str, person_id: str) -> bool:
        key = person_key(delivery_id, person_id)
        if key in self.items:
            return False
        self._get(key, lambda: PersonStateModel(delivery_id=delivery_id, sk=key[1]))
        return True


def _with_step(path: list[str], step: str) -> list[str]:
    """The click stream in time order ("<at>|<url_id>" steps), keeping the first MAX_PATH."""
    bisect.insort(path, step)
    return path[:MAX_PATH]


def _bump(
    breakdowns: dict[str, Any],
    dimension: str,
    name: str,
    measure: str,
    delta: int = 1,
    other: dict[str, Any] | None = None,
) -> None:
    name = utf8_prefix(name, MAX_NAME_BYTES)
    rows = breakdowns.setdefault(dimension, {})
    if delta < 0 and name not in rows and other is not None:
        # Taken off a name folded into "other" since it was counted: its count is there now.
        bucket = other.setdefault(dimension, {})
        bucket[measure] = max(0, int(bucket.get(measure, 0)) + delta)
        return
    row = rows.setdefault(name, {"opens": 0, "clicks": 0})
    row[measure] = max(0, int(row.get(measure, 0)) + delta)


def _bounded_breakdowns(
    breakdowns: dict[str, Any], other: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each breakdown keeps the ``MAX_BREAKDOWN_NAMES`` names with the most events (ties: by name);
    the counts of the others are added to its ``other`` row, so its totals stay what they were.

    Counts only ever grow, so a name folded into ``other`` takes nothing with it that it could later
    need back; should it come again, it starts from zero and competes like any new name. A crafted
    name seen once never pushes out a real one seen twice.
    """
    other = {dimension: _plain_counts(counts) for dimension, counts in other.items()}
    for dimension, rows in breakdowns.items():
        if len(rows) <= MAX_BREAKDOWN_NAMES:
            continue
        ranked = sorted(
            rows.items(),
            key=lambda entry: (-sum(int(entry[1].get(m, 0)) for m in BREAKDOWN_MEASURES), entry[0]),
        )
        bucket = other.setdefault(dimension, {})
        for _, row in ranked[MAX_BREAKDOWN_NAMES:]:
            for measure in BREAKDOWN_MEASURES:
                bucket[measure] = bucket.get(measure, 0) + int(row.get(measure, 0))
        breakdowns[dimension] = dict(ranked[:MAX_BREAKDOWN_NAMES])
    return breakdowns, other


def _plain(value: Any) -> dict[str, Any]:
    """A map attribute's value as a plain dict (PynamoDB hands over a MapAttribute or a dict)."""
    return value.as_dict() if hasattr(value, "as_dict") else dict(value or {})


def _breakdowns(stats: DeliveryStatsModel) -> dict[str, Any]:
    return _plain(stats.breakdowns)


def _plain_counts(value: Any) -> dict[str, int]:
    return {key: int(count) for key, count in _plain(value).items()}


def stream_of(path: Sequence[str]) -> tuple[str | None, list[str]]:
    """What a recipient's click path adds to the click streams: its path key and its transitions.

    ``path`` holds "<at>|<url_id>" steps in time order. A link clicked again straight away is one step
    (a double click or a reload is not a move); the key names the first ``MAX_STREAM_STEPS`` links,
    with a last step ``STREAM_CUT_SHORT`` when there were more.
    """
    links: list[str] = []
    for step in path:
        url_id = step.split("|", 1)[1]
        if not links or links[-1] != url_id:
            links.append(url_id)
    if not links:
        return None, []
    shown = links[:MAX_STREAM_STEPS] + ([STREAM_CUT_SHORT] if len(links) > MAX_STREAM_STEPS else [])
    moves = [STREAM_SEPARATOR.join(move) for move in pairwise(links)]
    return STREAM_SEPARATOR.join(shown), moves


class _StreamCounts:
    """One capped count map of a click-streams item, where a recipient is always taken off the very
    count they were added to.

    A new key beyond the cap is counted as "other". While anyone is counted there, every known key
    stays known (at zero if need be): a key that left and came back would take someone off the wrong
    count. With nobody in "other", keys at zero go, making room.
    """

    def __init__(self, counts: Any, other: Any, cap: int | None = None) -> None:
        self.counts = _plain_counts(counts)
        self.other = int(other or 0)
        self._cap = MAX_STREAM_ENTRIES if cap is None else cap

    def add(self, key: str, delta: int) -> None:
        if delta > 0 and key not in self.counts and len(self.counts) >= self._cap:
            self._forget_empty()
        if key in self.counts or (delta > 0 and len(self.counts) < self._cap):
            self.counts[key] = max(0, self.counts.get(key, 0) + delta)
        else:
            self.other = max(0, self.other + delta)

    def settled(self) -> dict[str, int]:
        self._forget_empty()
        return self.counts

    def _forget_empty(self) -> None:
        if self.other == 0:
            self.counts = {key: n for key, n in self.counts.items() if n > 0}


def _update_click_streams(
    state: _State, old_paths: Mapping[StateKey, tuple[str, ...]], *, human: bool = False
) -> None:
    """Move each recipient whose path changed in this batch from their old path to their new one
    (``human``: their path of human clicks, in the human click streams)."""
    changed: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for key in sorted(state.touched):
        item = state.touched[key]
        if not isinstance(item, RecipientStateModel):
            continue
        old, new = old_paths.get(key, ()), tuple((item.human_path if human else item.path) or ())
        if old != new:
            changed.setdefault(key[0], []).append((old, new))
    for delivery_id, moves in changed.items():
        streams = state.human_streams(delivery_id) if human else state.streams(delivery_id)
        paths = _StreamCounts(streams.paths, streams.other_paths)
        transitions = _StreamCounts(streams.transitions, streams.other_transitions)
        for old, new in moves:
            for path, delta in ((old, -1), (new, 1)):
                path_key, steps = stream_of(path)
                if path_key is not None:
                    paths.add(path_key, delta)
                for transition in steps:
                    transitions.add(transition, delta)
        streams.paths, streams.other_paths = paths.settled(), paths.other
        streams.transitions, streams.other_transitions = transitions.settled(), transitions.other


def consolidate(
    events: Iterable[RawEventModel],
    urls: Mapping[tuple[str, str], TrackedUrlModel | None],
    loaded: Mapping[StateKey, Model],
    domains: Mapping[tuple[str, str], str | None],
    log_ttl_days: int,
    deleted: Collection[str] = frozenset(),
    earlier_logs: Mapping[LogKey, TrackingLogModel] | None = None,
) -> Outcome:
    """Tracking logs for ``events`` and every indicator item they change (whole new items).

    None of the events of a ``deleted`` delivery (opens included) counts any more: they are logged
    as not counted. ``earlier_logs`` are the logs a honeypot hit of this batch may reclassify
    (``logs_to_recheck``), with their indicator items in ``loaded`` (``recheck_keys``).
    """
    state = _State(loaded, domains)
    outcome = Outcome()
    # The loaded items are updated in place: keep each recipient's path as it was before this batch.
    old_paths = {
        key: tuple(item.path or ()) for key, item in loaded.items() if isinstance(item, RecipientStateModel)
    }
    old_human_paths = {
        key: tuple(item.human_path or ())
        for key, item in loaded.items()
        if isinstance(item, RecipientStateModel)
    }
    tallies: dict[str, _Tally] = {}
    logs: dict[LogKey, TrackingLogModel] = dict(earlier_logs or {})
    for event in sorted(events, key=lambda e: e.sk):
        url = urls.get((event.delivery_id, event.url_id)) if event.url_id else None
        log = _log(event, url, log_ttl_days)
        if event.delivery_id in deleted:
            log.counted = False
        outcome.items.append(log)
        outcome.events += 1
        outcome.items.extend(keep_log(state.recipient(event.delivery_id, event.recipient_id), event.sk))
        if event.honeypot and not event.proof and event.delivery_id not in deleted:
            # Logged and counted only as a machine hit; every hit of its burst becomes a scanner's.
            tally = _tally(tallies, state, event.delivery_id)
            _count_machine(tally, log, SCANNER, 1)
            _honeypot(event, state, tally, logs, earlier_logs or {}, outcome)
            continue
        if not log.counted:
            continue
        tally = _tally(tallies, state, event.delivery_id)
        if event.kind not in WEB_KINDS and event.client_key:
            recipient = state.recipient(event.delivery_id, event.recipient_id)
            if recipient.honeypot_hits and log.machine != SCANNER and _in_burst(recipient, event):
                log.machine, log.machine_reason = SCANNER, BURST_REASON
            # Kept for a honeypot hit consolidated later: "<log sk>|<client key>", the latest
            # MAX_RECENT_HITS (one string each: cheaper to store and encode than a list).
            tally.remember(recipient, f"{event.sk}|{event.client_key}")
            logs[log_key(event)] = log
        _count(event, log, url, state, tally.stats, tally.breakdowns)
        if log.machine is not None:
            _count_machine(tally, log, str(log.machine), 1)
        elif event.kind not in WEB_KINDS:
            _count_human(log, state, tally, 1)
    for tally in tallies.values():
        stats = tally.stats
        stats.breakdowns, stats.other_breakdowns = _bounded_breakdowns(
            tally.breakdowns, _plain(stats.other_breakdowns)
        )
        tally.settle()
        stats.updated_at = timeutil.iso(timeutil.now())
    state.settle_pages()
    _update_click_streams(state, old_paths)
    _update_click_streams(state, old_human_paths, human=True)
    for written in (*outcome.items, *outcome.rewritten):
        if isinstance(written, TrackingLogModel):  # the burst settled: a scanner's leaves the feed
            opt_out_feed.mark(written)
    outcome.items.extend(state.touched.values())
    return outcome


# --- human and machine traffic ----------------------------------------------------------------


@dataclass
class _Tally:
    """A delivery's stats item and its breakdowns as plain dicts while a batch counts."""

    stats: DeliveryStatsModel
    breakdowns: dict[str, Any]
    human_breakdowns: dict[str, Any] = field(default_factory=dict)
    human_other: dict[str, Any] = field(default_factory=dict)
    human_touched: bool = False
    human_counts: dict[str, int] = field(default_factory=dict)
    machine_counts: dict[str, Any] | None = None
    # Each recipient's human counts (``RecipientStateModel.human``) and remembered hits, as plain
    # values while the batch counts: set on the items once, in ``settle``.
    recipients: dict[str, tuple[RecipientStateModel, dict[str, Any], list[str] | None]] = field(
        default_factory=dict
    )

    def human(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if not self.human_touched:
            self.human_breakdowns = _plain(self.stats.human_breakdowns)
            self.human_other = {
                d: _plain_counts(c) for d, c in _plain(self.stats.human_other_breakdowns).items()
            }
            found = _plain(self.stats.human)
            self.human_counts = {name: int(found.get(name, 0)) for name in HUMAN_FIELDS}
            self.human_touched = True
        return self.human_breakdowns, self.human_other

    def machine(self) -> dict[str, Any]:
        if self.machine_counts is None:
            found = _plain(self.stats.machine)
            self.machine_counts = {
                "total_opens": int(found.get("total_opens", 0)),
                "total_clicks": int(found.get("total_clicks", 0)),
                "by_kind": _plain_counts(found.get("by_kind")),
            }
        return self.machine_counts

    def recipient(self, recipient: RecipientStateModel) -> dict[str, Any]:
        entry = self.recipients.get(str(recipient.sk))
        if entry is None or entry[0] is not recipient:
            urls: dict[str, int] = {}
            for pair in (recipient.human_urls or "").split(","):
                if pair:
                    url_id, _, n = pair.rpartition(":")
                    urls[url_id] = int(n)
            human = {
                "hits": int(recipient.human_hits or 0),
                "clicks": int(recipient.human_clicks or 0),
                "opt_outs": int(recipient.human_opt_outs or 0),
                "urls": urls,
            }
            entry = self.recipients[str(recipient.sk)] = (recipient, human, None)
        return entry[1]

    def remember(self, recipient: RecipientStateModel, hit: str) -> None:
        human = self.recipient(recipient)
        hits = self.recipients[str(recipient.sk)][2]
        if hits is None:
            hits = _recent_hits(recipient)
            self.recipients[str(recipient.sk)] = (recipient, human, hits)
        # In log order, so the item is the same whatever order the shards' batches came in.
        bisect.insort(hits, hit)
        if len(hits) > MAX_RECENT_HITS:
            del hits[0]

    def settle_hits(self, recipient: RecipientStateModel) -> None:
        """The recipient's remembered hits on the item now (a honeypot hit reads them)."""
        entry = self.recipients.get(str(recipient.sk))
        if entry is not None and entry[0] is recipient and entry[2] is not None:
            recipient.recent_hits = " ".join(entry[2])

    def settle(self) -> None:
        stats = self.stats
        if self.human_touched:
            stats.human = {name: max(0, n) for name, n in self.human_counts.items()}
            stats.human_breakdowns, stats.human_other_breakdowns = _bounded_breakdowns(
                self.human_breakdowns, self.human_other
            )
        if self.machine_counts is not None:
            stats.machine = self.machine_counts
        for recipient, human, hits in self.recipients.values():
            recipient.human_hits = human["hits"] or None
            recipient.human_clicks = human["clicks"] or None
            recipient.human_opt_outs = human["opt_outs"] or None
            urls = ",".join(f"{url_id}:{n}" for url_id, n in sorted(human["urls"].items()) if n > 0)
            recipient.human_urls = urls or None
            if hits is not None:
                recipient.recent_hits = " ".join(hits)


def _tally(tallies: dict[str, _Tally], state: _State, delivery_id: str) -> _Tally:
    tally = tallies.get(delivery_id)
    if tally is None:
        stats = state.stats(delivery_id)
        tally = tallies[delivery_id] = _Tally(stats, _breakdowns(stats))
    return tally


def _count_machine(tally: _Tally, log: TrackingLogModel, kind: str, delta: int) -> None:
    """A logged machine hit (``delta`` 1) or one no longer counted as ``kind`` (-1)."""
    machine = tally.machine()
    by_kind = machine["by_kind"]
    by_kind[kind] = max(0, by_kind.get(kind, 0) + delta)
    if not by_kind[kind]:
        del by_kind[kind]  # a kind no hit is counted as any more is not listed
    if log.counted and log.type in ("open", "click"):
        measure = "total_opens" if log.type == "open" else "total_clicks"
        machine[measure] = max(0, int(machine[measure]) + delta)


def _count_human(log: TrackingLogModel, state: _State, tally: _Tally, delta: int) -> None:
    """Count a human open or URL hit (``delta`` 1), or take one off (-1) exactly: each distinct count
    moves only when the recipient's (or person's, or URL's) count of human hits leaves or reaches 0."""
    delivery_id = str(log.delivery_id)
    breakdowns, other = tally.human()
    human = tally.human_counts
    recipient = state.recipient(delivery_id, str(log.recipient_id))
    mine = tally.recipient(recipient)
    edge = 1 if delta > 0 else 0  # the count a distinct count moves at, after the change

    def step(name: str) -> bool:
        mine[name] = max(0, int(mine.get(name, 0)) + delta)
        return mine[name] == edge

    domain = recipient.email_domain or "unknown"
    client = (log.browser or "Unknown", log.os or "Unknown", log.device or "other")
    if step("hits"):
        human["opens"] += delta
        _bump(breakdowns, "domain", domain, "opens", delta, other)
    hour = state.hour(delivery_id, str(log.at))
    if log.type == "open":
        human["total_opens"] += delta
        hour.human_opens = max(0, int(hour.human_opens or 0) + delta)
        for dimension, name in zip(("browser", "os", "device"), client, strict=True):
            _bump(breakdowns, dimension, name, "opens", delta, other)
    elif log.url_id is not None:
        url_stats = state.url(delivery_id, str(log.url_id))
        url_stats.human_clicks = max(0, int(url_stats.human_clicks or 0) + delta)
        clicked = mine["urls"]
        clicked[str(log.url_id)] = max(0, clicked.get(str(log.url_id), 0) + delta)
        if clicked[str(log.url_id)] == edge:
            url_stats.human_distinct_clicks = max(0, int(url_stats.human_distinct_clicks or 0) + delta)
        if log.type == "click":
            human["total_clicks"] += delta
            hour.human_clicks = max(0, int(hour.human_clicks or 0) + delta)
            for dimension, name in zip(("browser", "os", "device"), client, strict=True):
                _bump(breakdowns, dimension, name, "clicks", delta, other)
            if step("clicks"):
                human["clicks"] += delta
                _bump(breakdowns, "domain", domain, "clicks", delta, other)
            clicked_at = f"{log.at}|{log.url_id}"
            path = list(recipient.human_path or ())
            if delta > 0:
                recipient.human_path = _with_step(path, clicked_at)
            elif clicked_at in path:
                path.remove(clicked_at)
                recipient.human_path = path or None
            person = state.person(delivery_id, log.person_id or f"recipient:{log.recipient_id}")
            person.human_clicks = max(0, int(person.human_clicks or 0) + delta)
            if person.human_clicks == edge:
                human["person_clicks"] += delta
        elif log.type == "opt_out":
            if step("opt_outs"):
                human["opt_outs"] += delta
        elif log.type == "mirror":
            human["mirror_page_views"] += delta
    elif log.type == "opt_out" and step("opt_outs"):  # a one-click unsubscribe: no URL
        human["opt_outs"] += delta


def _seconds(at: str) -> float:
    return timeutil.parse(at).timestamp()


def _window(entry: Sequence[Any]) -> float:
    return float(entry[2] if entry[2] is not None else DEFAULT_BURST_SECONDS)


def _in_burst(recipient: RecipientStateModel, event: RawEventModel) -> bool:
    """Whether a honeypot hit the recipient's state knows makes this hit part of its burst."""
    at: float | None = None
    for entry in recipient.honeypot_hits or ():
        if entry[1] != event.client_key:
            continue
        at = _seconds(event.at) if at is None else at
        if abs(at - _seconds(str(entry[0]))) <= _window(entry):
            return True
    return False


def _recent_hits(recipient: RecipientStateModel) -> list[str]:
    return (recipient.recent_hits or "").split()


def _burst_of(recipient: RecipientStateModel | None, at: str, client: str | None, window: float) -> list[str]:
    """Log sort keys of the recipient's remembered hits in the burst of a honeypot hit."""
    if recipient is None or client is None or not recipient.recent_hits:
        return []
    centre = _seconds(at)
    found = []
    for hit in _recent_hits(recipient):
        sk, _, key = str(hit).rpartition("|")
        if key == client and abs(_seconds(sk.split("#", 1)[0]) - centre) <= window:
            found.append(sk)
    return found


def _honeypot(
    event: RawEventModel,
    state: _State,
    tally: _Tally,
    logs: Mapping[LogKey, TrackingLogModel],
    earlier: Mapping[LogKey, TrackingLogModel],
    outcome: Outcome,
) -> None:
    """Remember a honeypot hit and make every remembered hit of its burst a scanner's, once."""
    recipient = state.recipient(event.delivery_id, event.recipient_id)
    if event.client_key is None:
        return
    window = float(event.burst_seconds if event.burst_seconds is not None else DEFAULT_BURST_SECONDS)
    known = list(recipient.honeypot_hits or ())
    entry = [event.at, event.client_key, int(window)]
    if entry not in known:
        known.append(entry)
        recipient.honeypot_hits = sorted(known, key=lambda hit: str(hit[0]))[-MAX_HONEYPOT_HITS:]
    tally.settle_hits(recipient)
    for sk in _burst_of(recipient, event.at, event.client_key, window):
        key = log_key(event, sk)  # a burst is one message's hits: the honeypot hit's partition
        log = logs.get(key)
        if log is None or log.machine == SCANNER:
            continue  # already a scanner's, or its log is gone (expired, erased)
        if log.machine is not None:
            _count_machine(tally, log, str(log.machine), -1)
        elif log.type not in WEB_KINDS:
            _count_human(log, state, tally, -1)
        log.machine, log.machine_reason = SCANNER, BURST_REASON
        _count_machine(tally, log, SCANNER, 1)
        if key in earlier:
            outcome.rewritten.append(log)


def logs_to_recheck(events: Iterable[RawEventModel], loaded: Mapping[StateKey, Model]) -> set[LogKey]:
    """The logs of earlier batches a honeypot hit of this batch may reclassify (none without one)."""
    wanted: set[LogKey] = set()
    for event in events:
        if not event.honeypot or event.proof or not event.client_key:
            continue
        recipient = loaded.get(recipient_key(event.delivery_id, event.recipient_id))
        window = float(event.burst_seconds if event.burst_seconds is not None else DEFAULT_BURST_SECONDS)
        for sk in _burst_of(recipient, event.at, event.client_key, window):  # type: ignore[arg-type]
            wanted.add(log_key(event, sk))
    return wanted


def log_key(event: RawEventModel, sk: str | None = None) -> LogKey:
    """The table key of the tracking log of ``event`` (or of its recipient's hit ``sk``)."""
    return (tracking_log_partition(event.delivery_id, event.recipient_id), sk or event.sk)


def recheck_keys(logs: Iterable[TrackingLogModel]) -> set[StateKey]:
    """The indicator items a reclassified log's counts live in."""
    keys: set[StateKey] = set()
    for log in logs:
        delivery_id = str(log.delivery_id)
        keys |= {stats_key(delivery_id), recipient_key(delivery_id, str(log.recipient_id))}
        keys.add(hour_key(delivery_id, str(log.at)))
        if log.url_id:
            keys.add(url_key(delivery_id, str(log.url_id)))
            keys.add(person_key(delivery_id, log.person_id or f"recipient:{log.recipient_id}"))
            keys.add(human_streams_key(delivery_id))
    return keys


def _log(event: RawEventModel, url: TrackedUrlModel | None, log_ttl_days: int) -> TrackingLogModel:
    """The tracking log of a raw event: an open, a click on a tracked URL, or a page view or a
    transaction of the web-tracking tag (``url`` is then the page it ran on).

    A transaction counts only with an amount and a currency the workflow can add up (the tag checks
    them; an event written otherwise is logged as it came, not counted).
    """
    client = parse_user_agent(event.user_agent)
    web = event.kind in WEB_KINDS
    transaction = event.kind == "transaction"
    shown: tuple[str | None, str | None, str | None]  # url_id, url, label
    if web:
        log_type = event.kind
        counted = not event.proof and (not transaction or _amount(event) is not None)
        shown = (None, utf8_prefix(event.page_url, MAX_PAGE_URL_BYTES) if event.page_url else None, None)
    elif event.source == ONE_CLICK and event.kind == "click":
        # A one-click unsubscribe (RFC 8058): an opt-out of the recipient, with no link.
        log_type, counted, shown = "opt_out", not event.proof, (None, None, None)
    else:
        log_type = "open" if event.kind == "open" else (url.category if url else "click")
        counted = not event.proof and (event.kind == "open" or (url is not None and url.tracked))
        clicked = url if event.kind != "open" else None
        shown = (
            event.url_id if event.kind != "open" else None,
            clicked.url if clicked else None,
            clicked.label if clicked else None,
        )
    expires = timeutil.parse(event.at) + timedelta(days=log_ttl_days)
    return TrackingLogModel(
        delivery_id=event.delivery_id,
        sk=event.sk,
        event_id=event.event_id,
        recipient_id=event.recipient_id,
        type=log_type,
        url_id=shown[0],
        url=shown[1],
        label=shown[2],
        at=event.at,
        browser=client.browser,
        os=client.os,
        device=client.device,
        person_id=event.person_id,
        proof=bool(event.proof),
        counted=counted,
        expires_at=int(expires.timestamp()),
        amount=event.amount if transaction else None,
        currency=event.currency if transaction else None,
        machine=event.machine,
        machine_reason=event.machine_reason,
        client_key=event.client_key,
    )


def _amount(event: RawEventModel) -> tuple[str, Decimal] | None:
    """A transaction's currency and amount, None unless both are usable."""
    currency = (event.currency or "").strip().upper()
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        return None
    try:
        amount = Decimal(event.amount or "")
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return currency, amount


def _count_visit(event: RawEventModel, state: _State, stats: DeliveryStatsModel) -> None:
    """A counted page view or transaction: the delivery's totals and the pages after each link."""
    if event.kind == "transaction":
        found = _amount(event)
        assert found is not None  # counted transactions carry a usable amount (``_log``)
        currency, amount = found
        totals = {key: str(value) for key, value in _plain(stats.transaction_amount).items()}
        stats.transactions += 1
        if currency not in totals and len(totals) >= MAX_CURRENCIES:
            stats.other_currency_transactions += 1
            return
        # Decimal strings, added exactly: 0.1 + 0.2 is 0.3, however many transactions there are.
        totals[currency] = str(Decimal(totals.get(currency, "0")) + amount)
        stats.transaction_amount = totals
        return
    stats.page_views += 1
    if event.via_url_id and event.page_url:
        page = utf8_prefix(event.page_url, MAX_STREAM_PAGE_BYTES)
        state.page_counts(event.delivery_id).add(f"{event.via_url_id}{PAGE_SEPARATOR}{page}", 1)


def _count(
    event: RawEventModel,
    log: TrackingLogModel,
    url: TrackedUrlModel | None,
    state: _State,
    stats: DeliveryStatsModel,
    breakdowns: dict[str, Any],
) -> None:
    if event.kind in WEB_KINDS:
        _count_visit(event, state, stats)
        return
    delivery_id = event.delivery_id
    recipient = state.recipient(delivery_id, event.recipient_id)
    hour = state.hour(delivery_id, event.at)
    domain = recipient.email_domain or "unknown"
    client = (log.browser or "Unknown", log.os or "Unknown", log.device or "other")
    if not recipient.opened:  # any tracking event proves an open, a click without a pixel too
        recipient.opened = True
        stats.opens += 1
        _bump(breakdowns, "domain", domain, "opens")
    if log.type == "open":
        stats.total_opens += 1
        hour.opens += 1
        for dimension, name in zip(("browser", "os", "device"), client, strict=True):
            _bump(breakdowns, dimension, name, "opens")
        return
    if log.type == "opt_out" and event.url_id is None:  # a one-click unsubscribe: no URL to count
        _opt_out(recipient, stats)
        return
    assert url is not None and event.url_id is not None  # counted clicks name a known URL
    url_stats = state.url(delivery_id, event.url_id)
    url_stats.clicks += 1
    # Shards are consolidated one after another, so events do not arrive in time order.
    url_stats.first_click = min(url_stats.first_click or event.at, event.at)
    url_stats.last_click = max(url_stats.last_click or event.at, event.at)
    clicked_urls = set(recipient.urls or ())
    if event.url_id not in clicked_urls:
        clicked_urls.add(event.url_id)
        recipient.urls = clicked_urls
        url_stats.distinct_clicks += 1
    if log.type == "click":
        stats.total_clicks += 1
        hour.clicks += 1
        for dimension, name in zip(("browser", "os", "device"), client, strict=True):
            _bump(breakdowns, dimension, name, "clicks")
        recipient.path = _with_step(list(recipient.path or ()), f"{event.at}|{event.url_id}")
        if not recipient.clicked:
            recipient.clicked = True
            stats.clicks += 1
            _bump(breakdowns, "domain", domain, "clicks")
        if state.person_is_new(delivery_id, _person(event)):
            stats.person_clicks += 1
    elif log.type == "opt_out":
        _opt_out(recipient, stats)
    elif log.type == "mirror":
        stats.mirror_page_views += 1


def _opt_out(recipient: RecipientStateModel, stats: DeliveryStatsModel) -> None:
    """``opt_outs`` counts recipients, by link or one-click alike: a second opt-out adds nothing."""
    if not recipient.opted_out:
        recipient.opted_out = True
        stats.opt_outs += 1
