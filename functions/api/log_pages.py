"""Tracking logs a page at a time, in time order, from every chain they are spread over.

A delivery's logs lie in ``log_chains.LOG_CHAINS`` chains by recipient (``log_chains.chain_of``), each
a run of items holding about 14 logs in time order (sort key ``<at>#<event_id>``, unique); a chain is
read from a position by ``chain_reader``. A page is a k-way merge of those chains: each is queried for
a few items, their heads are merged with a heap, and a chain is queried again only when its buffer is
empty and it may still hold the next log (its reading has not passed the best head of the others). So
a page reads O(page / logs per item + chains) items, however many logs the delivery has, and comes out
in exactly the order one table would give: by sort key (time, then event id), newest or oldest first.
The Queries of one round (every chain at the start of a page; those whose buffers ran dry, which a
filter can make many) are sent at once from a pool of threads, so a page waits for about two Query
round trips (three oldest first: a chain's owner item comes before the rest), not sixty-four.

``Positions`` says where each chain resumes: after the last log of it a page returned (or, when
nothing of it is buffered, after all it read: what a filter discarded is not read again), or nowhere
when it is done. The route's cursor carries them (``reports.py``). The recipient scope (the keys the
recipient's states list) is one source, read log by log with ``query_logs``; its budget counts logs.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from functions.api.chain_reader import read_chain
from functions.api.report_repository import LogChunk, LogKey, LogQuery, ReportRepository, TrackingLog
from functions.shared.log_chains import LOG_CHAINS, chain_of, chains

FILTERED_CHUNK = 200  # logs read per round when a filter may discard most of them (over all sources)
MAX_QUERIES_PER_SOURCE = 20  # belt and braces: DynamoDB may return few items per call
LOGS_PER_ITEM = 14  # about what a chain item holds (``log_chains``): a round's Limits count items

# One thread per chain: a round's Queries all wait on the network at once. The threads start at
# the first round of more than one Query and stay for the function's next invocations.
_QUERIES = ThreadPoolExecutor(max_workers=LOG_CHAINS, thread_name_prefix="log-query")


@dataclass(frozen=True)
class Positions:
    """Where each source of a query resumes: after ``after[name]`` (absent: from the start); a source
    in ``done`` has nothing more. A source's name is its chain's key (``""``: the recipient scope)."""

    after: Mapping[str, LogKey] = field(default_factory=dict)
    done: frozenset[str] = frozenset()

    @classmethod
    def after_all(cls, sources: Sequence[LogQuery], key: LogKey) -> Positions:
        """Every source resumes after one log's place in the order (an export's saved position)."""
        return cls({source_name(query): key for query in sources})


def sources(query: LogQuery) -> list[LogQuery]:
    """The single-chain queries a query reads: the delivery's chains (only the recipient's one when it
    filters on a recipient), or the query itself in the recipient scope."""
    if query.scope != "delivery":
        return [query]
    if query.recipient_id:
        return [replace(query, partition=chain_of(query.scope_id, query.recipient_id))]
    return [replace(query, partition=chain) for chain in chains(query.scope_id)]


def source_name(query: LogQuery) -> str:
    return query.partition or ""


class _Order:
    """A log's place in the query's order, for the heap (a min-heap: reversed when newest first)."""

    __slots__ = ("forward", "key")

    def __init__(self, sk: str, name: str, forward: bool) -> None:
        self.key = (sk, name)
        self.forward = forward

    def __lt__(self, other: _Order) -> bool:
        return self.key < other.key if self.forward else self.key > other.key


class _Source:
    def __init__(self, query: LogQuery, start: LogKey | None, size: int) -> None:
        self.query = query
        self.name = source_name(query)
        self.start = start  # where this page began reading it
        self.emitted: LogKey | None = None  # the last of its logs the page returned
        self.frontier = start  # where its next query starts: after everything it read
        self.buffer: deque[TrackingLog] = deque()
        self.exhausted = False
        self.size = size  # the Limit of its next query, doubled at each one
        self.queries = 0

    def order(self, sk: str) -> _Order:
        return _Order(sk, self.name, self.query.forward)

    def position(self) -> LogKey | None:
        """Where the next page resumes it; None: from the start (only when it never returned a log)."""
        if self.buffer:  # its unreturned logs are read again: resume after what was returned
            return self.emitted or self.start
        return self.frontier

    @property
    def done(self) -> bool:
        return self.exhausted and not self.buffer


def read_page(
    repo: ReportRepository,
    queries: Sequence[LogQuery],
    positions: Positions,
    limit: int,
    max_read: int,
) -> tuple[list[TrackingLog], Positions | None]:
    """Up to ``limit`` logs of ``queries`` merged in order, from ``positions``, reading at most about
    ``max_read`` items (chain items; logs in the recipient scope); and the positions the next page
    starts from (None: nothing is left).

    A page shorter than ``limit`` with positions means the reading budget ran out first (a filter
    that matches little); the next page goes on from there, reading nothing twice that it discarded.
    """
    live = [query for query in queries if source_name(query) not in positions.done]
    if not live:
        return [], None
    filtered = any(query.filtered for query in live)
    per_item = LOGS_PER_ITEM if live[0].scope == "delivery" else 1
    first = math.ceil((limit + 1) / (len(live) * per_item)) + (0 if per_item > 1 else 1)
    if filtered:
        first = max(first, math.ceil(FILTERED_CHUNK / (len(live) * per_item)))
    first = max(1, min(first, max_read // (2 * len(live))))  # the first round leaves half the budget
    reading = [_Source(query, positions.after.get(source_name(query)), first) for query in live]
    heads: list[tuple[_Order, int]] = []
    page: list[TrackingLog] = []
    read = 0
    while True:
        if len(page) == limit and heads:
            break  # full, and a next log is known to exist
        best = heads[0][0] if heads else None
        needy = [
            n
            for n, source in enumerate(reading)
            if not source.buffer
            and not source.exhausted
            and (best is None or source.frontier is None or source.order(source.frontier.sk) < best)
        ]
        if needy:
            # Each Query of the round is given its share of the budget before any is sent, in the
            # order of the sources; those left without one wait for the next round, which counts
            # what the others really read.
            round_: list[tuple[int, int]] = []
            unread = max_read - read
            for n in needy:
                source = reading[n]
                size = min(source.size, unread)
                if not filtered:  # never more than the page can still take
                    size = min(size, math.ceil((limit + 1 - len(page)) / per_item))
                if source.queries >= MAX_QUERIES_PER_SOURCE or (size < 1 and not round_):
                    # The budget ran out before the next log was known: a short page, and a cursor.
                    return page, _positions(reading, positions.done)
                if size < 1:
                    break
                round_.append((n, size))
                unread -= size
            for (n, _), chunk in zip(round_, _query_all(repo, reading, round_), strict=True):
                source = reading[n]
                source.queries += 1
                source.size *= 2
                read += chunk.read
                source.buffer.extend(chunk.items)
                if chunk.items:
                    heapq.heappush(heads, (source.order(chunk.items[0].sk), n))
                if chunk.last_evaluated is None:
                    source.exhausted = True
                else:
                    source.frontier = chunk.last_evaluated
            continue
        if not heads or len(page) == limit:
            break
        _, n = heapq.heappop(heads)
        source = reading[n]
        log = source.buffer.popleft()
        page.append(log)
        source.emitted = LogKey(log.delivery_id, log.sk)
        if source.buffer:
            heapq.heappush(heads, (source.order(source.buffer[0].sk), n))
    return page, _positions(reading, positions.done)


def _query_all(
    repo: ReportRepository, reading: Sequence[_Source], round_: Sequence[tuple[int, int]]
) -> list[LogChunk]:
    """The round's Queries (source, Limit), sent at once when there are several; their answers in
    the same order. A failed Query fails the page, once every Query of the round has answered."""
    if len(round_) == 1:
        ((n, size),) = round_
        return [_query(repo, reading[n].query, reading[n].frontier, size)]
    sent = [_QUERIES.submit(_query, repo, reading[n].query, reading[n].frontier, size) for n, size in round_]
    wait(sent)
    return [answer.result() for answer in sent]


def _query(repo: ReportRepository, query: LogQuery, start_after: LogKey | None, size: int) -> LogChunk:
    if query.scope == "delivery":
        assert query.partition is not None, "a delivery's logs are read chain by chain (sources)"
        return read_chain(repo, query, query.partition, start_after, size)
    return repo.query_logs(query, start_after, size)


def _positions(reading: Sequence[_Source], done_before: frozenset[str]) -> Positions | None:
    if all(source.done for source in reading):
        return None
    after: dict[str, LogKey] = {}
    for source in reading:
        position = source.position()
        if not source.done and position is not None:
            after[source.name] = position
    return Positions(after, done_before | {source.name for source in reading if source.done})
