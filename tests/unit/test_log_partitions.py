"""A delivery's tracking logs spread over partition keys and chains, and the logs route merging the
chains back in order.

The route is driven through ``reports.delivery_logs`` with the in-memory repository, which answers
one DynamoDB Query of one chain's items at a time and counts the items each query returns.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.api import cursors, reports
from functions.api.reports import LogRequest
from functions.shared import log_chains, raw_events
from functions.shared.errors import InvalidCursor
from functions.shared.log_chain_store import ChainItems
from functions.shared.log_chains import LOG_CHAINS, chain_of, chains
from functions.shared.tables import (
    TRACKING_LOG_PARTITIONS,
    legacy_tracking_log_partition,
    tracking_log_partition,
    tracking_log_partitions,
)
from tests.fakes_reports import FakeReports, stored
from tests.unit.test_workflow import RUN_AT, Clock, campaign, seeded_store, workflow

HOUR = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def at(second: int) -> str:
    return (HOUR + timedelta(seconds=second)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def walk(
    fake: FakeReports, request: LogRequest, max_pages: int = 10_000, stop_after: int | None = None
) -> tuple[list[list[str]], list[int]]:
    """The pages of the delivery's logs (event ids), every one or the first ``stop_after``, and the
    chain items each request read."""
    pages: list[list[str]] = []
    reads: list[int] = []
    cursor = None
    while True:
        before = fake.logs_read
        page = reports.delivery_logs("d1", replace(request, cursor=cursor), repo=fake)
        reads.append(fake.logs_read - before)
        pages.append([item.event_id for item in page.items])
        assert len(page.items) <= request.limit
        cursor = page.next_cursor
        if cursor is None or len(pages) == stop_after:
            return pages, reads
        assert len(pages) < max_pages, "paging does not end"


# --- the partition key ---------------------------------------------------------------------------


def test_a_recipients_logs_share_one_chain_of_the_delivery_and_chains_name_their_delivery() -> None:
    # Given a recipient of a delivery, When its partition is asked for twice (and for another delivery)
    first, again = tracking_log_partition("d1", "r42"), tracking_log_partition("d1", "r42")
    # Then it is stable, one of the delivery's 64 chains, and another delivery's chains are others
    assert first == again == log_chains.chain_of("d1", "r42") and first in log_chains.chains("d1")
    assert len(set(log_chains.chains("d1"))) == log_chains.LOG_CHAINS == 64
    assert not set(log_chains.chains("d1")) & set(log_chains.chains("d2"))
    assert log_chains.delivery_of(first) == "d1"
    # And where the log was stored before chains is still known, for their migration
    assert legacy_tracking_log_partition("d1", "r42") in tracking_log_partitions("d1")
    assert len(set(tracking_log_partitions("d1"))) == TRACKING_LOG_PARTITIONS == 16


def test_the_write_pattern_of_a_million_recipients_spreads_evenly_over_chains_each_fed_by_its_own_shards() -> (
    None
):
    # Given one delivery sent to 1,000,000 recipients, each hitting once
    recipients = [f"recipient-{n:07d}" for n in range(1_000_000)]
    # When each hit's raw-event shard (64 of them) and tracking-log chain are worked out
    shards = Counter(raw_events.shard_of("d-campaign", r, 64) for r in recipients)
    chains = Counter(tracking_log_partition("d-campaign", r) for r in recipients)
    # Then every key is used and the busiest holds at most 1.1 x the mean
    assert len(shards) == 64 and max(shards.values()) <= 1.1 * len(recipients) / 64
    assert len(chains) == 64 and max(chains.values()) <= 1.1 * len(recipients) / 64
    # And raw shard n of S feeds chain n % 64 (S >= 64) or chains n, n + S, ... (S < 64): with the
    # default 64 shards, each shard its own chain, so the workers never write one chain together
    for count in (16, 64, 256):
        fed = {
            (raw_events.shard_of("d-campaign", r, count), log_chains.chain_number("d-campaign", r))
            for r in recipients[:64_000]
        }
        expected = {
            (raw_events.shard_name(n, count), chain)
            for n in range(count)
            for chain in range(log_chains.LOG_CHAINS)
            if chain % min(count, log_chains.LOG_CHAINS) == n % log_chains.LOG_CHAINS
        }
        assert fed == expected, count


def test_the_workflow_writes_each_log_to_its_recipients_partition() -> None:
    # Given the campaign of the workflow tests (several recipients of d1)
    store = seeded_store()
    campaign(store)
    # When the workflow runs
    workflow(store, Clock(RUN_AT)).run("run-1", "schedule")
    # Then each log's key is its recipient's partition, and d1's logs sit under several keys
    assert store.logs and all(
        key == (tracking_log_partition(log.delivery_id, log.recipient_id), log.sk)
        for key, log in store.logs.items()
    )
    assert len({key[0] for key, log in store.logs.items() if log.delivery_id == "d1"}) > 1


# --- merged pages: order, no gaps, no duplicates ---------------------------------------------------

LOGS = st.lists(
    st.tuples(
        st.integers(0, 30),  # recipient: r0..r30, over many of the 64 chains
        st.integers(0, 12),  # second: many logs share a time, the event id breaks the tie
        st.sampled_from(["open", "click", "opt_out"]),
        st.sampled_from([None, "apple_mpp"]),
    ),
    max_size=60,
)
ASKED = st.fixed_dictionaries(
    {
        "limit": st.integers(1, 12),
        "order": st.sampled_from(["asc", "desc"]),
        "type": st.sampled_from([None, "click"]),
        "recipient_id": st.sampled_from([None, "r3"]),
        "since": st.sampled_from([None, 3]),
        "until": st.sampled_from([None, 9]),
        "traffic": st.sampled_from(["all", "human"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(logs=LOGS, asked=ASKED, budget=st.sampled_from([reports.MAX_ITEMS_READ_PER_PAGE, 40, 17]))
def test_pages_concatenated_are_the_sorted_matching_logs_whatever_the_logs_page_size_order_and_filters(
    logs: list[tuple[int, int, str, str | None]], asked: dict[str, Any], budget: int
) -> None:
    # Given any logs of d1 spread over its chains, and any page size, order, filters and reading budget
    fake = FakeReports()
    fake.add_delivery("d1")
    for n, (recipient, second, kind, machine) in enumerate(logs):
        fake.add_log("d1", f"e{n:03d}", at(second), recipient_id=f"r{recipient}", type=kind, machine=machine)
    since = HOUR + timedelta(seconds=asked["since"]) if asked["since"] is not None else None
    until = HOUR + timedelta(seconds=asked["until"]) if asked["until"] is not None else None
    request = LogRequest(**{**asked, "since": since, "until": until})
    expected = [
        log
        for log in fake.logs
        if (request.type is None or log.type == request.type)
        and (request.recipient_id is None or log.recipient_id == request.recipient_id)
        and (since is None or log.at >= at(asked["since"]))
        and (until is None or log.at < at(asked["until"]))
        and (request.traffic == "all" or log.machine is None)
    ]
    expected.sort(key=lambda log: log.sk, reverse=request.order == "desc")
    original = reports.MAX_ITEMS_READ_PER_PAGE
    reports.MAX_ITEMS_READ_PER_PAGE = budget
    try:
        # When every page is read, cursor after cursor
        pages, _ = walk(fake, request, max_pages=len(logs) + 20)
    finally:
        reports.MAX_ITEMS_READ_PER_PAGE = original
    # Then the pages, one after the other, are exactly the matching logs in order: no gap, no duplicate
    assert [event for page in pages for event in page] == [log.event_id for log in expected]
    # And with the full budget every page but the last is full
    if budget == original:
        assert all(len(page) == request.limit for page in pages[:-1])


# --- cursors --------------------------------------------------------------------------------------


def spread_logs(count: int) -> FakeReports:
    """``count`` logs of d1, one a second, by 1,000 recipients."""
    fake = FakeReports()
    fake.add_delivery("d1")
    for n in range(count):
        fake.add_log("d1", f"e{n:06d}", at(n), recipient_id=f"r{n % 1000}")
    return fake


def test_a_cursor_naming_a_chain_the_delivery_does_not_have_is_refused() -> None:
    # Given a real cursor of d1's logs
    fake = spread_logs(100)
    first = reports.delivery_logs("d1", LogRequest(limit=10), repo=fake)
    position = cursors.decode(first.next_cursor)
    assert position is not None and position["a"]
    # When it is re-signed naming chain 64 (there are c00-c63), or with a position that is no text
    for forged in (
        {**position, "a": {"c64": "x"}},
        {**position, "a": {"c03": 7}},
        {**position, "x": ["c99"]},
        {**position, "a": {"3": "x"}},
    ):
        # Then the route refuses it as invalid (a 400), it does not read anything
        with pytest.raises(InvalidCursor):
            reports.delivery_logs("d1", LogRequest(limit=10, cursor=cursors.encode(forged)), repo=fake)


def test_a_cursor_made_before_the_logs_were_chained_is_refused_with_a_message_saying_so() -> None:
    # Given a cursor of d1's logs as the route signed it when logs sat in 16 partitions
    fake = spread_logs(100)
    first = reports.delivery_logs("d1", LogRequest(limit=10), repo=fake)
    position = cursors.decode(first.next_cursor)
    assert position is not None
    old = {"q": position["q"], "a": {"3": f"{at(50)}#e000050"}, "x": ["0", "1"]}
    # When it is used, Then the route refuses it (a 400) and says to start again from the first page
    with pytest.raises(InvalidCursor, match="before tracking logs were stored in chains"):
        reports.delivery_logs("d1", LogRequest(limit=10, cursor=cursors.encode(old)), repo=fake)


# --- chains queried at once ------------------------------------------------------------------------


@dataclass
class GatheredReports(FakeReports):
    """Answers a Query only once ``together`` of them are waiting at once (in as many threads), for
    its first ``gathered`` Queries: a reader that queries one chain after the other gets no answer,
    its first Query fails after ``WAIT`` seconds (``threading.BrokenBarrierError``)."""

    together: int = LOG_CHAINS
    gathered: int = LOG_CHAINS
    arrived: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Barrier = field(init=False)

    WAIT = 10.0

    def __post_init__(self) -> None:
        self.gate = threading.Barrier(self.together, timeout=self.WAIT)

    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        with self.lock:
            self.arrived += 1
            gated = self.arrived <= self.gathered
        if gated:
            self.gate.wait()
        return super().chain_items(chain, key, forward=forward, limit=limit, inclusive=inclusive)


def recipient_per_chain(delivery_id: str) -> dict[str, str]:
    """One recipient id for each of the delivery's chains."""
    found: dict[str, str] = {}
    n = 0
    while len(found) < LOG_CHAINS:
        found.setdefault(chain_of(delivery_id, f"r{n}"), f"r{n}")
        n += 1
    return found


def test_a_page_queries_the_64_chains_at_once_and_its_cursors_page_queries_them_at_once_again() -> None:
    # Given a delivery's logs over its 64 chains, and a repository that answers none of the first
    # 64 Queries of a page until all 64 wait together
    fake = GatheredReports()
    fake.add_delivery("d1")
    for n in range(2_000):
        fake.add_log("d1", f"e{n:06d}", at(n), recipient_id=f"r{n % 1000}")
    # When the first page is read
    first = reports.delivery_logs("d1", LogRequest(limit=50), repo=fake)
    # Then it is the 50 newest logs, in order, from one Query of each chain sent at once
    assert [item.event_id for item in first.items] == [f"e{n:06d}" for n in range(1_999, 1_949, -1)]
    assert {query.partition for query, *_ in fake.queries[:LOG_CHAINS]} == set(chains("d1"))
    # And the page its cursor leads to is the next 50, its chains queried at once again
    fake.arrived = 0
    second = reports.delivery_logs("d1", LogRequest(limit=50, cursor=first.next_cursor), repo=fake)
    assert [item.event_id for item in second.items] == [f"e{n:06d}" for n in range(1_949, 1_899, -1)]


def test_chains_whose_first_query_found_nothing_matching_are_queried_again_at_once() -> None:
    # Given 150 logs in each of the 64 chains (two items each), the oldest of each an opt-out, the
    # others opens, and a repository that answers every Query only when 64 wait together
    by_chain = recipient_per_chain("d1")
    fake = GatheredReports(gathered=10_000)
    fake.add_delivery("d1")
    for n, (chain, recipient) in enumerate(by_chain.items()):
        logs = [
            fake.add_log(
                "d1", f"e{n:02d}-{second:03d}", at(second), recipient_id=recipient,
                type="opt_out" if second == 0 else "open", write=False,
            )
            for second in range(150)
        ]  # fmt: skip
        fake.write_chain(chain, [stored(log) for log in logs])
        assert len(fake.chains[chain]) >= 2
    # When the opt-outs are asked for, newest first
    page = reports.delivery_logs("d1", LogRequest(limit=50, type="opt_out"), repo=fake)
    # Then the first round finds only opens (the newest item of each chain), and the second round,
    # every chain queried again at once, finds the 64 opt-outs: a full page, in order
    assert [item.event_id for item in page.items] == [f"e{n:02d}-000" for n in range(63, 13, -1)]
    assert len(fake.queries) == 2 * LOG_CHAINS
