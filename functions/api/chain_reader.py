"""One chain of a delivery's tracking logs read from a position, a few items at a time.

A chain (``functions/shared/log_chains.py``) is a run of items keyed by their start, each owning the
logs from its start up to the next item's start. Read from a position (a place in the sort-key order,
exclusive):

- **newest first**: Query ``sk < position`` descending. The first item returned owns the position's
  predecessor (the next item starts at or after the position), each further one owns the keys up to
  the start of the one read before it; so ownership needs nothing beyond what was read.
- **oldest first**: the item owning the position (Query ``sk <= position`` descending, Limit 1), then
  Query ``sk > position`` ascending. The last item read is kept back: where it ends is the next item's
  start, not yet known, so its logs are read again by the next Query (a crash leftover in it would
  otherwise be shown twice).

Logs are decoded, the ownership rule applied, then the window (since/until) and the filters (type,
recipient, URL, traffic) in code: an item holds logs of every kind, so nothing is filtered by DynamoDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from functions.api.report_repository import LogChunk, LogKey, LogQuery, log_record, matches
from functions.shared.log_chain_store import ChainItems
from functions.shared.log_chains import ChainItem, owned
from functions.shared.models import TrackingLogModel

# The items a chain's Query returns oldest first when it is not the chain's last: one more than it
# uses, the last one kept back (see above).
MIN_FORWARD_ITEMS = 2


class ChainItemReader(Protocol):
    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        """One Query (``log_chain_store.query_items``)."""
        ...


def read_chain(
    reader: ChainItemReader, query: LogQuery, chain: str, start_after: LogKey | None, size: int
) -> LogChunk:
    """The logs of ``chain`` after ``start_after`` (in the query's order) that match the query, from
    about ``size`` items; ``read`` counts the items, ``last_evaluated`` is where the next read resumes
    (None: the chain has nothing more in the window)."""
    if query.forward:
        return _oldest_first(reader, query, chain, start_after, size)
    return _newest_first(reader, query, chain, start_after, size)


def _newest_first(
    reader: ChainItemReader, query: LogQuery, chain: str, start_after: LogKey | None, size: int
) -> LogChunk:
    top = start_after.sk if start_after is not None else None
    if query.until is not None and (top is None or query.until < top):
        top = query.until
    answer = reader.chain_items(chain, top, forward=False, limit=max(1, size))
    found: list[TrackingLogModel] = []
    end, done = top, not answer.more
    for item in answer.items:
        found += reversed(list(owned([item], end)))
        end = item.start
        if query.since is not None and item.start <= query.since:
            done = True  # every item after it ends before ``since``
            break
    last = None if done or not answer.items else LogKey(query.scope_id, answer.items[-1].start)
    return _chunk(query, found, len(answer.items), last)


def _oldest_first(
    reader: ChainItemReader, query: LogQuery, chain: str, start_after: LogKey | None, size: int
) -> LogChunk:
    # Logs are ``<at>#<event_id>``, never equal to a time: "after since" is "from since on".
    low = max((key for key in (start_after.sk if start_after else None, query.since) if key), default=None)
    owner: list[ChainItem] = []
    if low is not None:
        owner = reader.chain_items(chain, low, forward=False, limit=1, inclusive=True).items
    answer = reader.chain_items(chain, low, forward=True, limit=max(MIN_FORWARD_ITEMS, size))
    read = owner + answer.items
    used, next_start = (read[:-1], read[-1].start) if answer.more else (read, None)
    mine = list(owned(used, next_start))
    done = not answer.more or (
        query.until is not None and next_start is not None and next_start >= query.until
    )
    last = None
    if not done:
        # Everything up to the greatest key read is evaluated: the next Query reads its owner again
        # (one item) and from the kept-back item on.
        last = LogKey(
            query.scope_id, max([low or "", *(item.start for item in used), *(str(log.sk) for log in mine)])
        )
    found = [log for log in mine if low is None or str(log.sk) > low]
    return _chunk(query, found, len(read), last)


def _chunk(query: LogQuery, found: Sequence[TrackingLogModel], read: int, last: LogKey | None) -> LogChunk:
    logs = [
        log_record(log)
        for log in found
        if (query.since is None or str(log.sk) >= query.since)
        and (query.until is None or str(log.sk) < query.until)
    ]
    return LogChunk([log for log in logs if matches(query, log)], read, last)
