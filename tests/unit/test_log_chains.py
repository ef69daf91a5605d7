"""Tracking-log chains (functions/shared/log_chains.py): packing, ownership, and crash-safe merges.

An in-memory chain stands in for the table: items by start, each with a version; a write puts the
steps of ``merged`` in order and may stop after any put (a crash), and readers read with ``owned``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.shared import log_chains
from functions.shared.log_chains import ChainItem, decode, encode, merged, owned
from functions.shared.models import TrackingLogModel

CHAIN = log_chains.chain_key("d1", 7)


def _log(n: int, **fields: Any) -> TrackingLogModel:
    """Log ``n`` of a campaign: ids as random as real ones, so they compress as real logs do."""
    at = f"2026-12-06T10:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}Z"
    noise = hashlib.sha256(str(n).encode()).hexdigest()
    values: dict[str, Any] = {
        "partition": CHAIN,
        "sk": f"{at}#{noise[:26]}",
        "delivery_id": "d1",
        "event_id": noise[:26],
        "recipient_id": f"rcpt-{noise[26:34]}",
        "type": "click" if n % 3 else "open",
        "url_id": str(n % 5) if n % 3 else None,
        "url": f"https://shop.example.com/item/{n % 5}" if n % 3 else None,
        "label": "Shop now" if n % 3 else None,
        "at": at,
        "browser": "Mobile Safari",
        "os": "iOS",
        "device": "iPhone",
        "person_id": None,
        "proof": False,
        "counted": True,
        "expires_at": 1_800_000_000 + n,
        "machine": "apple_mpp" if n % 7 == 0 else None,
        "machine_reason": "Apple's proxy range" if n % 7 == 0 else None,
        "client_key": noise[34:50],
    }
    values.update(fields)
    return TrackingLogModel(**values)


class Chain:
    """A chain in memory: what the table would hold under one partition key."""

    def __init__(self) -> None:
        self.items: dict[str, ChainItem] = {}
        self.puts = 0

    def covering(self, low: str, high: str) -> tuple[list[ChainItem], str | None]:
        starts = sorted(self.items)
        owner = [start for start in starts if start <= low]
        chosen = ([owner[-1]] if owner else []) + [start for start in starts if low < start <= high]
        after = [start for start in starts if start > high]
        return [self.items[start] for start in chosen], (after[0] if after else None)

    def write(
        self, upserts: list[TrackingLogModel], removed: list[str], crash_after: int | None = None
    ) -> bool:
        keys = [str(log.sk) for log in upserts] + removed
        if not keys:
            return True
        existing, next_start = self.covering(min(keys), max(keys))
        write = merged(CHAIN, existing, next_start, upserts, removed)
        for step in write.steps:
            for item in step:
                if crash_after is not None and self.puts >= crash_after:
                    return False
                stored = self.items.get(item.start)
                assert (stored.version if stored else 0) == item.version, "a conditional put would fail"
                self.items[item.start] = ChainItem(CHAIN, item.start, item.logs, item.version + 1, item.blob)
                self.puts += 1
        return True

    def read(self) -> list[TrackingLogModel]:
        items = [self.items[start] for start in sorted(self.items)]
        return list(owned(items, None))


def test_given_logs_when_encoded_and_decoded_then_every_field_comes_back() -> None:
    logs = [_log(n) for n in range(20)] + [
        _log(99, amount="12.50", currency="EUR", type="transaction", proof=True)
    ]
    back = decode(CHAIN, encode(logs))
    assert [b.serialize() for b in back] == [log.serialize() for log in logs]


def test_given_typical_logs_when_packed_then_an_item_holds_many_within_one_write_unit() -> None:
    chain = Chain()
    chain.write([_log(n) for n in range(1000)], [])
    items = list(chain.items.values())
    # Given 1,000 logs appended to an empty chain, each item stays within 1 KB and holds >= 10 logs.
    assert all(_size(item) <= log_chains.ITEM_BYTES for item in items)
    assert len(items) <= 100
    assert max(len(item.logs) for item in items) < 40  # as real logs: ~60 bytes each compressed
    assert [str(log.sk) for log in chain.read()] == sorted(str(_log(n).sk) for n in range(1000))


def test_given_a_chain_when_a_log_is_written_again_then_it_replaces_the_old_one() -> None:
    chain = Chain()
    chain.write([_log(n) for n in range(50)], [])
    chain.write([_log(10, machine="scanner", machine_reason="honeypot burst")], [])
    logs = chain.read()
    assert len(logs) == 50
    assert [log.machine for log in logs if log.sk == _log(10).sk] == ["scanner"]


def test_given_appends_when_written_batch_after_batch_then_only_the_last_item_is_rewritten() -> None:
    chain = Chain()
    chain.write([_log(n) for n in range(200)], [])
    before = chain.puts
    chain.write([_log(n) for n in range(200, 203)], [])
    # When three logs are appended, one put: the chain's last item, rewritten with them.
    assert chain.puts - before == 1


def test_given_a_huge_log_when_packed_then_it_is_an_item_alone() -> None:
    chain = Chain()
    chain.write([_log(1), _log(2, url="https://x.example/" + "a" * 3000), _log(3)], [])
    assert [str(log.sk) for log in chain.read()] == [str(_log(n).sk) for n in (1, 2, 3)]


def _size(item: ChainItem) -> int:
    return len(encode(item.logs)) + item.budget() * 0 + (log_chains.ITEM_BYTES - item.budget())


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(st.integers(0, 400), min_size=20, max_size=120, unique=True),
    second=st.lists(st.integers(0, 400), min_size=1, max_size=60, unique=True),
    removed=st.lists(st.integers(0, 400), max_size=20, unique=True),
    crash=st.integers(0, 12),
)
def test_given_any_writes_when_a_write_stops_after_any_put_then_no_log_is_lost_or_shown_twice(
    first: list[int], second: list[int], removed: list[int], crash: int
) -> None:
    chain = Chain()
    chain.write([_log(n) for n in first], [])
    expected_before = sorted(str(_log(n).sk) for n in first)
    assert [str(log.sk) for log in chain.read()] == expected_before
    upserts = [_log(n, machine="scanner") for n in second]
    gone = [str(_log(n).sk) for n in removed if n not in second]
    finished = chain.write(upserts, gone, crash_after=chain.puts + crash)
    seen = [str(log.sk) for log in chain.read()]
    # Whenever it stopped: each log at most once, in order, and every log not written or removed kept.
    assert seen == sorted(set(seen))
    kept = set(expected_before) - set(gone) - {str(log.sk) for log in upserts}
    assert kept <= set(seen)
    # Written again in full (the replay), the chain holds exactly what it should.
    if not finished:
        chain.write(upserts, gone)
    final = {str(log.sk): log for log in chain.read()}
    assert sorted(final) == sorted((set(expected_before) - set(gone)) | {str(log.sk) for log in upserts})
    assert all(final[str(log.sk)].machine == "scanner" for log in upserts)
    # And no item keeps a copy of a log another item owns (a crash's leftovers are cleaned).
    _assert_each_item_holds_only_its_own(chain)


def _assert_each_item_holds_only_its_own(chain: Chain) -> None:
    starts = sorted(chain.items)
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else None
        assert all(
            start <= str(log.sk) and (end is None or str(log.sk) < end) for log in chain.items[start].logs
        )


def test_given_a_full_item_when_many_logs_land_inside_it_then_a_stop_after_any_put_loses_nothing() -> None:
    # Given a chain of full items, when 60 logs land inside its first item, that item hands its tail
    # to several new items: whichever put the write stops after, every earlier log is still shown.
    first = list(range(0, 600, 10))
    inside = [n for n in range(1, 140) if n % 10]
    puts = _puts_of_write(first, inside)
    assert puts >= 4
    for crash in range(puts + 1):
        chain = Chain()
        chain.write([_log(n) for n in first], [])
        chain.write([_log(n) for n in inside], [], crash_after=chain.puts + crash)
        seen = [str(log.sk) for log in chain.read()]
        assert seen == sorted(set(seen))
        assert {str(_log(n).sk) for n in first} <= set(seen), f"stopped after put {crash}"
        chain.write([_log(n) for n in inside], [])
        assert len(chain.read()) == len(first) + len(inside)
        _assert_each_item_holds_only_its_own(chain)


def _puts_of_write(first: list[int], then: list[int]) -> int:
    chain = Chain()
    chain.write([_log(n) for n in first], [])
    before = chain.puts
    chain.write([_log(n) for n in then], [])
    return chain.puts - before


@pytest.mark.parametrize("count", [1, 13, 14, 15, 300])
def test_given_n_logs_when_appended_then_items_are_full_but_the_last(count: int) -> None:
    chain = Chain()
    chain.write([_log(n) for n in range(count)], [])
    items = [chain.items[start] for start in sorted(chain.items)]
    assert sum(len(item.logs) for item in items) == count
    for item in items[:-1]:
        assert _size(item) <= log_chains.ITEM_BYTES


def test_given_copies_left_by_a_crash_when_a_later_write_spans_their_item_then_they_are_dropped() -> None:
    # Given logs landing inside the second item stopped after its tail was put, the second item
    # still holds copies of logs its new neighbours own.
    chain = Chain()
    chain.write([_log(n) for n in range(0, 900, 10)], [])
    starts = sorted(chain.items)
    second = chain.items[starts[1]]
    inside = [n + 1 for n in range(0, 900, 10) if str(_log(n).sk) in {str(log.sk) for log in second.logs}][:5]
    assert not chain.write([_log(n) for n in inside], [], crash_after=chain.puts + 1)
    # When a later write touches the items on both sides of it and nothing it owns,
    first_log, last_log = _log(1), _log(891)
    assert str(first_log.sk) < starts[1] and str(last_log.sk) > starts[2]
    chain.write([first_log, last_log], [])
    # then the second item no longer keeps those copies.
    _assert_each_item_holds_only_its_own(chain)
