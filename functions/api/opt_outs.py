"""The opt-out feed: ``GET /api/opt-outs``, the people who opted out, oldest first, with the address each
message was rendered for, for a sending system to suppress.

An entry is a tracking log in the ``opt_out_feed`` index (``functions/shared/opt_out_feed.py`` decides
which: a person's opt-out link or one-click unsubscribe). The feed lists only logs whose verdict is
final: the honeypot burst can still make a hit a scanner's until every honeypot hit that could reach
it is consolidated, that is up to ``MAX_BURST_SECONDS`` after it plus the time a raw event may become
visible late. So the feed ends ``SETTLE`` before the start of the newest run that consolidated
everything recorded before it started (succeeded, not stopped early): a listed opt-out never leaves
the feed again, except by erasure. With an hourly schedule an opt-out appears within about 1 h 10 min.

The addresses (``RecipientEmailModel``, one partition per recipient) are written at rendering, read
here only, erased with the recipient (``erase_emails``) and never logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from functions.api import cursors, report_repository
from functions.api.report_repository import RunRecord
from functions.shared import opt_out_feed, timeutil
from functions.shared.errors import InvalidCursor, InvalidRequest
from functions.shared.machine_settings import MAX_BURST_SECONDS
from functions.shared.settings import settings

MAX_PAGE_SIZE = 200
STOPPED_EARLY = "stopped early"  # how a run that did not reach its start time says so (workflow.py)
# How far back a complete run is looked for: with none among the newest 20 (the workflow failing for
# that long), the feed waits for the next success rather than read further on every call.
MAX_RUNS_READ = 20


@dataclass(frozen=True)
class FeedEntry:
    """An opt-out as the index holds it."""

    sk: str  # "<at>#<event_id>": the feed's order
    delivery_id: str
    recipient_id: str
    url_id: str | None
    at: str


@dataclass(frozen=True)
class OptOut:
    recipient_id: str
    email: str | None
    delivery_id: str
    at: str
    source: opt_out_feed.Source
    event_id: str


@dataclass(frozen=True)
class OptOutPage:
    items: tuple[OptOut, ...]
    next_cursor: str | None


class OptOutStore(Protocol):
    def entries(self, lower: str, upper: str, limit: int) -> list[FeedEntry]:
        """Up to ``limit`` feed entries with ``lower <= sk < upper``, in sk order."""
        ...

    def emails(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The addresses of the (recipient, delivery) pairs that have one."""
        ...

    def runs(self, limit: int) -> Sequence[RunRecord]:
        """The newest ``limit`` runs of the tracking workflow, newest first."""
        ...

    def erase_emails(self, recipient_id: str) -> int:
        """Delete every address kept for the recipient; how many."""
        ...


def settle_seconds() -> int:
    """How long before a complete run's start an opt-out must be to be listed: the longest burst a
    honeypot hit can carry plus the late-event grace, unless ``MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS``."""
    config = settings()
    if config.opt_out_feed_delay_seconds is not None:
        return config.opt_out_feed_delay_seconds
    return MAX_BURST_SECONDS + config.late_event_grace_seconds


def settled_until(runs: Iterable[RunRecord], delay_seconds: int) -> str | None:
    """The time before which every opt-out's verdict is final (ISO), None before any complete run."""
    for run in runs:
        if run.status == "succeeded" and not any(e.startswith(STOPPED_EARLY) for e in run.errors):
            return timeutil.iso(timeutil.parse(run.started_at) - timedelta(seconds=delay_seconds))
    return None


def page(
    *,
    since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
    store: OptOutStore | None = None,
) -> OptOutPage:
    """One page of the feed, oldest first; ``next_cursor`` is None on the last page (for now: poll
    again later with ``since`` = the last ``at`` seen, and skip the event ids already handled)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    position = cursors.decode(cursor)
    after: str | None = None
    if position is not None:
        after = position.get("after")
        if not isinstance(after, str) or position.get("feed") != "opt-outs":
            raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    store = store or repository()
    upper = settled_until(store.runs(MAX_RUNS_READ), settle_seconds())
    if upper is None:
        return OptOutPage((), None)
    lower = max(after or "", timeutil.iso(since) if since else "")
    found = [e for e in store.entries(lower, upper, limit + 2) if e.sk != after][: limit + 1]
    shown = found[:limit]
    emails = store.emails({(e.recipient_id, e.delivery_id) for e in shown})
    items = tuple(_opt_out(entry, emails) for entry in shown)
    more = len(found) > limit
    return OptOutPage(items, cursors.encode({"feed": "opt-outs", "after": shown[-1].sk}) if more else None)


def _opt_out(entry: FeedEntry, emails: Mapping[tuple[str, str], str]) -> OptOut:
    return OptOut(
        recipient_id=entry.recipient_id,
        email=emails.get((entry.recipient_id, entry.delivery_id)),
        delivery_id=entry.delivery_id,
        at=entry.at,
        source=opt_out_feed.source(entry.url_id),
        event_id=entry.sk.partition("#")[2],
    )


# --- DynamoDB ---------------------------------------------------------------------------------


class DynamoOptOutStore:
    def entries(self, lower: str, upper: str, limit: int) -> list[FeedEntry]:
        from functions.shared.models import OptOutFeed, TrackingLogModel

        if lower >= upper:
            return []
        index = TrackingLogModel.opt_out_feed_index
        sk = OptOutFeed.sk
        found: list[FeedEntry] = []
        # ``between`` includes its upper bound; a bound is a bare time, which no "<at>#<id>" equals.
        for item in index.query(
            opt_out_feed.FEED_KEY,
            range_key_condition=sk.between(lower, upper) if lower else sk < upper,
            page_size=min(limit, 500),
        ):
            if str(item.sk) >= upper:
                continue
            found.append(
                FeedEntry(
                    str(item.sk), str(item.delivery_id), str(item.recipient_id), item.url_id, str(item.at)
                )
            )
            if len(found) >= limit:
                break
        return found

    def emails(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        from functions.shared.models import EMAIL_PREFIX, RecipientEmailModel

        wanted = [(EMAIL_PREFIX + recipient_id, delivery_id) for recipient_id, delivery_id in sorted(keys)]
        if not wanted:
            return {}
        return {
            (str(item.delivery_id).removeprefix(EMAIL_PREFIX), str(item.sk)): str(item.email)
            for item in RecipientEmailModel.batch_get(wanted)
        }

    def runs(self, limit: int) -> Sequence[RunRecord]:
        return report_repository.repository().runs(limit)

    def erase_emails(self, recipient_id: str) -> int:
        from functions.shared.models import EMAIL_PREFIX, RecipientEmailModel

        found = list(RecipientEmailModel.query(EMAIL_PREFIX + recipient_id))
        with RecipientEmailModel.batch_write() as batch:
            for item in found:
                batch.delete(item)
        return len(found)


_store: OptOutStore | None = None


def repository() -> OptOutStore:
    """The container's store: DynamoDB unless ``use`` installed another (tests)."""
    global _store
    if _store is None:
        _store = DynamoOptOutStore()
    return _store


def use(replacement: OptOutStore | None) -> None:
    global _store
    _store = replacement
