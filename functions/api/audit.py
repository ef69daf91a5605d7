"""The audit trail: every change made through the report API, who made it (the API token's name),
what it changed and when, with the state before and after.

Entries live in the workflow table under one partition (``pk = "audit"``) with a time-sortable sort
key (``time_key`` of the change's time and a random suffix), so the newest-first listing is one query; ``since`` and
``until`` bound the sort key and ``action`` filters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from functions.api import cursors
from functions.shared import ids, timeutil
from functions.shared.errors import InvalidCursor, InvalidRequest

Action = Literal[
    "delivery_created",
    "delivery_deleted",
    "url_changed",
    "settings_changed",
    "workflow_run_requested",
    "erasure_requested",
    "failures_reported",
    "tracking_test_requested",
    "site_created",
    "site_deleted",
    "webhook_created",
    "webhook_deleted",
    "export_requested",
]
ACTIONS: tuple[str, ...] = get_args(Action)
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class AuditEntry:
    id: str  # sorts by time
    at: str
    actor: str
    action: str
    target: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True)
class AuditQuery:
    since: str | None = None  # sort-key bounds (``time_key``): since inclusive, until exclusive
    until: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class AuditPage:
    items: tuple[AuditEntry, ...]
    next_cursor: str | None


class AuditTrail(Protocol):
    def add(self, entry: AuditEntry) -> None: ...

    def newest(self, query: AuditQuery, before: str | None, limit: int) -> list[AuditEntry]:
        """Up to ``limit`` entries matching ``query`` whose id sorts before ``before``, newest first."""


def time_key(moment: datetime) -> str:
    """The sort-key prefix of a moment: ``20261123T081500123456Z`` (microseconds, so that changes
    made one after the other keep their order; ``ids.run_id`` style otherwise)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond:06d}Z"


def record(
    action: Action,
    target: str,
    *,
    actor: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    trail: AuditTrail | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    moment = now or timeutil.now()
    entry = AuditEntry(
        id=f"{time_key(moment)}-{ids.random_id(6)}",
        at=timeutil.iso(moment),
        actor=actor,
        action=action,
        target=target,
        before=before,
        after=after,
    )
    (trail if trail is not None else trail_in_use()).add(entry)
    return entry


def newest(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    trail: AuditTrail | None = None,
) -> AuditPage:
    """One page of the trail, newest first; ``next_cursor`` is None on the last page."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    if action is not None and action not in ACTIONS:
        raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}")
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("until must be later than since")
    before = None
    position = cursors.decode(cursor)
    if position is not None:
        before = position.get("before")
        if not isinstance(before, str):
            raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    query = AuditQuery(
        since=time_key(since) if since else None, until=time_key(until) if until else None, action=action
    )
    found = (trail if trail is not None else trail_in_use()).newest(query, before, limit + 1)
    items = tuple(found[:limit])
    next_cursor = cursors.encode({"before": items[-1].id}) if len(found) > limit else None
    return AuditPage(items, next_cursor)


class DynamoAuditTrail:
    def add(self, entry: AuditEntry) -> None:
        from functions.shared.models import AuditModel

        AuditModel(
            sk=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            before=None if entry.before is None else json.dumps(entry.before, sort_keys=True),
            after=None if entry.after is None else json.dumps(entry.after, sort_keys=True),
        ).save()

    def newest(self, query: AuditQuery, before: str | None, limit: int) -> list[AuditEntry]:
        from functions.shared.models import AUDIT_PK, AuditModel

        # ``until`` is a bare time key: every id of that very millisecond sorts after it (exclusive).
        upper = min((b for b in (query.until, before) if b is not None), default="~")
        lower = query.since
        if lower is not None and upper <= lower:
            return []
        found: list[AuditEntry] = []
        for item in AuditModel.query(
            AUDIT_PK,
            range_key_condition=AuditModel.sk.between(lower, upper) if lower else AuditModel.sk < upper,
            filter_condition=(AuditModel.action == query.action) if query.action else None,
            scan_index_forward=False,
            page_size=max(limit, 25),
        ):
            if item.sk >= upper:  # ``between`` includes its upper bound: the cursor's own entry
                continue
            found.append(
                AuditEntry(
                    id=item.sk,
                    at=item.at,
                    actor=item.actor,
                    action=item.action,
                    target=item.target,
                    before=json.loads(item.before) if item.before else None,
                    after=json.loads(item.after) if item.after else None,
                )
            )
            if len(found) >= limit:
                break
        return found


_trail: AuditTrail | None = None


def trail_in_use() -> AuditTrail:
    """The container's audit trail: DynamoDB unless ``use`` installed another (tests)."""
    global _trail  # one per container
    if _trail is None:
        _trail = DynamoAuditTrail()
    return _trail


def use(replacement: AuditTrail | None) -> None:
    """Install an audit trail (an in-memory fake in tests); None restores the DynamoDB one."""
    global _trail
    _trail = replacement
