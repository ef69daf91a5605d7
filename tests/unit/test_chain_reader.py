"""The logs route reading a delivery's tracking-log chains (functions/api/chain_reader.py, log_pages.py).

The in-memory repository keeps each chain as DynamoDB would: items of packed logs written by
``log_chains.merged`` (``FakeReports.write_chain``, which can stop after any put as a crash does), and
answers one Query of a chain's items at a time, counting the items it returns.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.api.reports import LogRequest
from functions.shared import log_chains
from functions.shared.models import TrackingLogModel
from tests.fakes_reports import FakeReports, stored
from tests.unit.test_log_partitions import HOUR, at, walk


def one_recipients_logs(fake: FakeReports, count: int, recipient: str = "r1") -> list[str]:
    """``count`` logs of one recipient (one chain), one a second, each a write of its own."""
    events = [f"e{n:04d}" for n in range(count)]
    for n, event in enumerate(events):
        fake.add_log("d1", event, at(n), recipient_id=recipient, type="click" if n % 3 else "open")
    return events


def items_of(fake: FakeReports, recipient: str = "r1") -> list[log_chains.ChainItem]:
    chain = fake.chains[log_chains.chain_of("d1", recipient)]
    return [chain[start] for start in sorted(chain)]


@pytest.fixture
def fake() -> FakeReports:
    reports_fake = FakeReports()
    reports_fake.add_delivery("d1")
    return reports_fake


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_given_pages_that_end_inside_an_item_when_paged_then_every_log_comes_once_in_order(
    fake: FakeReports, order: str, limit: int
) -> None:
    # Given 300 logs of one recipient packed in a few items of many logs each
    events = one_recipients_logs(fake, 300)
    items = items_of(fake)
    assert 2 <= len(items) < 300 // 7, "items hold many logs: most page ends fall inside one"
    # When every page is read, cursor after cursor
    pages, _ = walk(fake, LogRequest(limit=limit, order=order))
    # Then the pages, one after the other, are the logs in order, and every page but the last is full
    expected = events if order == "asc" else events[::-1]
    assert [event for page in pages for event in page] == expected
    assert all(len(page) == limit for page in pages[:-1])


@pytest.mark.parametrize("stop_after", [1, 2, 3])
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_given_a_write_stopped_by_a_crash_when_paged_then_a_leftover_copy_is_never_shown_twice(
    fake: FakeReports, stop_after: int, order: str
) -> None:
    # Given a chain whose items were being split when a crash stopped the write: an old item still
    # holds copies of logs that a new item to its right now owns
    chain = log_chains.chain_of("d1", "r1")
    for n in range(200):
        fake.add_log("d1", f"e{2 * n:04d}", at(2 * n))
    written_before = {f"e{2 * n:04d}" for n in range(200)}
    between = [
        stored(replace(fake.logs[n], sk=f"{at(2 * n + 1)}#e{2 * n + 1:04d}", event_id=f"e{2 * n + 1:04d}"))
        for n in range(200)
    ]
    assert not fake.write_chain(chain, between, stop_after=stop_after)
    held = [str(log.sk) for item in items_of(fake) for log in item.logs]
    assert len(held) > len(set(held)), "the crash left copies of some logs in two items"
    shown = {log.event_id for log in log_chains.owned(items_of(fake), None)}
    assert written_before <= shown
    # When every page is read, in pages of 7
    pages, _ = walk(fake, LogRequest(limit=7, order=order))
    # Then each log the chain holds is shown once, in order, whichever item the page ends in
    events = [event for page in pages for event in page]
    assert len(events) == len(set(events))
    assert events == sorted(shown, reverse=order == "desc")


LOGS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 400), st.sampled_from(["open", "click", "opt_out"])),
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(
    logs=LOGS,
    order=st.sampled_from(["desc", "asc"]),
    limit=st.integers(1, 40),
    since=st.none() | st.integers(0, 400),
    until=st.none() | st.integers(0, 400),
    kind=st.none() | st.sampled_from(["open", "click"]),
    recipient=st.none() | st.integers(0, 5),
    stop_after=st.none() | st.integers(0, 6),
)
def test_given_any_chains_when_paged_with_any_window_and_filters_then_pages_are_the_matching_logs_in_order(
    logs: list[tuple[int, int, str]],
    order: str,
    limit: int,
    since: int | None,
    until: int | None,
    kind: str | None,
    recipient: int | None,
    stop_after: int | None,
) -> None:
    # Given logs of 6 recipients (some sharing a chain), and maybe a last write stopped by a crash
    fake = FakeReports()
    fake.add_delivery("d1")
    for n, (who, second, type_) in enumerate(logs):
        fake.add_log("d1", f"e{n:03d}", f"{at(second)[:-1]}{n:03d}Z", recipient_id=f"r{who}", type=type_)
    if stop_after is not None and logs:
        chain = log_chains.chain_of("d1", "r0")
        late = [
            stored(replace(log, sk=f"{log.at[:-1]}9Z#late{n}", event_id=f"late{n}"))
            for n, log in enumerate(fake.logs)
            if log.recipient_id == "r0"
        ]
        fake.write_chain(chain, late, stop_after=stop_after)
    shown = {
        str(log.sk): log
        for items in fake.chains.values()
        for log in log_chains.owned([items[start] for start in sorted(items)], None)
    }
    low = HOUR + timedelta(seconds=since) if since is not None else None
    high = HOUR + timedelta(seconds=until) if until is not None else None
    request = LogRequest(
        order=order,
        limit=limit,
        since=low,
        until=high,
        type=kind,
        recipient_id=f"r{recipient}" if recipient is not None else None,
    )
    expected = sorted(
        (
            sk
            for sk, log in shown.items()
            if (since is None or sk >= at(since))
            and (until is None or sk < at(until))
            and (kind is None or log.type == kind)
            and (recipient is None or log.recipient_id == f"r{recipient}")
        ),
        reverse=order == "desc",
    )
    if since is not None and until is not None and since >= until:
        expected = []
    # When every page is read
    pages, _ = walk(fake, request)
    # Then they are exactly the matching logs, each once, in order
    by_event = {str(log.event_id): sk for sk, log in shown.items()}
    assert [by_event[event] for page in pages for event in page] == expected


def spread_logs(count: int) -> FakeReports:
    """``count`` logs of d1, one a second, by 1,000 recipients over the 64 chains, written in batches
    of 100 as the tracking workflow writes them."""
    fake = FakeReports()
    fake.add_delivery("d1")
    batches: dict[str, list[TrackingLogModel]] = {}
    for n in range(count):
        log = fake.add_log("d1", f"e{n:06d}", at(n), recipient_id=f"r{n % 1000}", write=False)
        batches.setdefault(log_chains.chain_of("d1", log.recipient_id), []).append(stored(log))
        if n % 100 == 99 or n == count - 1:
            for chain, batch in batches.items():
                fake.write_chain(chain, batch)
            batches.clear()
    return fake


@pytest.mark.parametrize("count", [1_000, 20_000])
@pytest.mark.parametrize("limit", [50, 200])
def test_given_any_delivery_size_when_paged_then_a_page_reads_about_its_size_in_items_plus_the_chains(
    count: int, limit: int
) -> None:
    # Given a delivery of 1,000 or 20,000 logs over its 64 chains
    fake = spread_logs(count)
    # When the first pages are read, newest first and oldest first
    for order in ("desc", "asc"):
        pages, reads = walk(fake, LogRequest(limit=limit, order=order), stop_after=5)
        # Then each page reads at most two items per 14 logs it returns and three items a chain,
        # never the delivery
        bound = 2 * limit // 14 + 3 * log_chains.LOG_CHAINS
        assert max(reads) <= bound, reads
        assert all(len(page) == limit for page in pages[:5])


def test_given_a_recipient_filter_when_paged_then_only_that_recipients_chain_is_read() -> None:
    # Given a delivery's logs over 1,000 recipients
    fake = spread_logs(2_000)
    # When one recipient's logs are paged
    fake.queries.clear()
    pages, _ = walk(fake, LogRequest(limit=1, recipient_id="r7"))
    # Then they come newest first, and only that recipient's chain was queried
    assert pages == [["e001007"], ["e000007"]]
    assert {query.partition for query, *_ in fake.queries} == {log_chains.chain_of("d1", "r7")}


def test_given_since_and_until_when_paged_both_ways_then_each_order_reads_only_near_the_window() -> None:
    # Given 20,000 logs, and a window of 100 seconds in the middle
    fake = spread_logs(20_000)
    window: dict[str, Any] = {
        "since": HOUR + timedelta(seconds=10_000),
        "until": HOUR + timedelta(seconds=10_100),
    }
    for order in ("desc", "asc"):
        pages, reads = walk(fake, LogRequest(limit=200, order=order, **window))
        # Then each order answers the window's 100 logs, reading items near it only
        expected = [f"e{n:06d}" for n in range(10_000, 10_100)]
        assert pages == [expected if order == "asc" else expected[::-1]]
        assert sum(reads) <= 3 * log_chains.LOG_CHAINS + 2 * 100 // 14 + log_chains.LOG_CHAINS, reads


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_given_every_chain_resuming_when_paged_with_real_event_ids_then_the_cursor_is_read_back(
    order: str,
) -> None:
    # Given 5 logs in each of the 64 chains, with event ids as long as real ones (26 characters)
    from tests.unit.test_log_partitions import recipient_per_chain

    fake = FakeReports()
    fake.add_delivery("d1")
    logs = []
    for n, recipient in enumerate(recipient_per_chain("d1").values()):
        for second in range(5):
            event = f"{n:02d}{second}" + "7ZK4Q2M9XW3H8TN5VB6RJ1D0C"[: 26 - 3]
            logs.append((at(64 * second + n), event))
            fake.add_log("d1", event, at(64 * second + n), recipient_id=recipient)
    expected = [event for _, event in sorted(logs)]
    # When they are paged 200 at a time: the cursor after the first page names every chain
    pages, _ = walk(fake, LogRequest(limit=200, order=order))
    # Then the second page follows from it, and every log comes once, in order
    assert [event for page in pages for event in page] == (expected if order == "asc" else expected[::-1])
    assert len(pages) == 2
