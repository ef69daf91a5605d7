"""Each recipient's state lists the sort keys of every tracking log of theirs in its delivery.

The recipient Tracking tab and erasure find a recipient's logs there (``functions/shared/recipient_logs``),
so the list must be exact: every log (proofs, untracked links, late events, web visits), in order,
once, whatever the batches, the workers or a crash did; past the list's bound, in the state or in
exactly one of the pages of keys it spilled (``functions/shared/recipient_log_pages``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.consolidate.batch import keep_log
from functions.shared import recipient_log_pages
from functions.shared.limits import MAX_RECIPIENT_LOGS
from functions.shared.models import RecipientLogPageModel, RecipientStateModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import CHROME, RUN_AT, T0, Clock, campaign, hit, seeded_store, workflow


def logs_by_recipient(store: FakeWorkflowStore) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (_, sk), log in store.logs.items():
        found[(str(log.delivery_id), str(log.recipient_id))].append(sk)
    return {key: sorted(sks) for key, sks in found.items()}


def listed(store: FakeWorkflowStore) -> dict[tuple[str, str], list[str]]:
    return {
        (delivery_id, str(item.recipient_id)): str(item.logs).split()
        for (delivery_id, sk), item in store.indicators.items()
        if sk.startswith("r#") and item.logs
    }


def test_every_log_of_a_campaign_is_listed_in_its_recipients_state_once_and_in_order() -> None:
    # Given a campaign with proofs and untracked links, consolidated two events a batch
    store = seeded_store()
    campaign(store)
    # When the workflow runs, and runs again over nothing new
    workflow(store, batch_size=2).run("run-1", "schedule")
    workflow(store, Clock(RUN_AT + timedelta(hours=1)), batch_size=2).run("run-2", "schedule")
    # Then each recipient's state lists exactly the sort keys of its logs, the proof's (r7) included
    assert listed(store) == logs_by_recipient(store)
    assert ("d1", "r7") in listed(store)


def test_a_late_event_is_listed_in_time_order_by_the_next_run() -> None:
    # Given r1's hits consolidated by a first run
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    before = listed(store)[("d1", "r1")]
    # When a hit from before the run arrives late and the next run consolidates it
    hit(store, "r1", "2", person="p1", at=RUN_AT - timedelta(seconds=30))
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then r1's list gains it, in order
    assert listed(store) == logs_by_recipient(store)
    after = listed(store)[("d1", "r1")]
    assert len(after) == len(before) + 1 and after == sorted(after)


def test_a_recipients_web_visits_are_listed_too() -> None:
    # Given a page view attributed to r2 (the web-tracking tag), consolidated with r2's click
    store = seeded_store()
    hit(store, "r2", "1", person="p2")
    store.add_raw(
        RawEvent(
            "web-1",
            "page",
            "d1",
            "r2",
            None,
            T0,
            CHROME,
            "p2",
            "203.0.113.0",
            False,
            page_url="https://x.example/",
        )
    )
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then both logs are in r2's list
    assert len(listed(store)[("d1", "r2")]) == 2 == len(logs_by_recipient(store)[("d1", "r2")])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sks=st.lists(
        st.integers(0, 10**6).map(lambda n: f"2026-11-23T{n % 24:02d}:00:00.000Z#e{n:07d}"), max_size=60
    ),
    repeats=st.lists(st.integers(0, 59), max_size=10),
)
def test_keep_log_lists_each_key_once_in_order(sks: list[str], repeats: list[int]) -> None:
    # Given keys in any order, some of them again (a batch consolidated again after a crash)
    state = RecipientStateModel(delivery_id="d1", sk="r#r1", recipient_id="r1")
    again = [sks[n] for n in repeats if n < len(sks)]
    # When each is kept
    for sk in [*sks, *again]:
        keep_log(state, sk)
    # Then the list is the sorted distinct keys
    assert (state.logs or "").split() == sorted(set(sks))
    assert not state.logs_overflow


def spill(state: RecipientStateModel, sks: list[str], cap: int) -> list[RecipientLogPageModel]:
    return [page for sk in sks for page in recipient_log_pages.keep(state, sk, cap)]


KEYS = st.lists(
    st.integers(0, 10**6).map(lambda n: f"2026-11-23T{n % 24:02d}:{n % 60:02d}:00.000Z#e{n:07d}"), max_size=80
)


@settings(max_examples=200, deadline=None)
@given(sks=KEYS, repeats=st.lists(st.integers(0, 79), max_size=20), cap=st.integers(1, 8))
def test_past_the_bound_every_key_is_in_the_list_or_in_one_page(
    sks: list[str], repeats: list[int], cap: int
) -> None:
    # Given keys in any order (late ones too), some of them again, and a list bound of ``cap``
    state = RecipientStateModel(delivery_id="d1", sk="r#r1", recipient_id="r1")
    again = [sks[n] for n in repeats if n < len(sks)]
    # When each is kept
    pages = spill(state, [*sks, *again], cap)
    # Then every key is listed in the state or in a page, the list stays within its bound, and the
    # state counts its pages, numbered 1, 2, ... (one key each: written once, never changed)
    listed = (state.logs or "").split()
    assert len(listed) <= cap and listed == sorted(listed)
    assert set(listed) | {sk for page in pages for sk in page.log_keys()} == set(sks)
    assert [int(page.number) for page in pages] == list(range(1, int(state.log_pages or 0) + 1))
    assert len({page.sk for page in pages}) == len(pages)
    assert all(page.log_keys() == sorted(set(page.log_keys())) for page in pages)
    # And unless a page overlaps, pages hold disjoint ranges in order, every key at most the sealed one
    if pages:
        assert max(sk for page in pages for sk in page.log_keys()) == state.logs_sealed
    if not state.logs_overlap:
        ranges = sorted((page.log_keys()[0], page.log_keys()[-1]) for page in pages)
        assert all(last < first for (_, last), (first, _) in itertools.pairwise(ranges))
    assert not state.logs_overflow


def test_in_time_order_pages_hold_the_bound_plus_one_then_the_bound() -> None:
    # Given a recipient state listing as many keys as it may
    state = RecipientStateModel(delivery_id="d1", sk="r#r1", recipient_id="r1")
    keys = [f"2026-11-23T08:00:00.000Z#e{n:07d}" for n in range(2 * MAX_RECIPIENT_LOGS + 2)]
    assert spill(state, keys[:MAX_RECIPIENT_LOGS], MAX_RECIPIENT_LOGS) == []
    # When one more log comes, and then as many again
    first = keep_log(state, keys[MAX_RECIPIENT_LOGS])
    rest = [page for sk in keys[MAX_RECIPIENT_LOGS + 1 :] for page in keep_log(state, sk)]
    # Then the list spilled whole to page 1, and once full again to page 2
    assert [page.log_keys() for page in first] == [keys[: MAX_RECIPIENT_LOGS + 1]]
    assert [page.log_keys() for page in rest] == [keys[MAX_RECIPIENT_LOGS + 1 :]]
    assert state.logs is None and state.log_pages == 2 and state.logs_sealed == keys[-1]
    assert not state.logs_overlap and not state.logs_overflow
    # And a page is well under DynamoDB's 400 KB, as stored in the recipient's partition
    stored = first[0].as_stored()
    assert stored.delivery_id == "#r#r1" and str(stored.sk).startswith("l#d1#" + keys[0])
    assert len(str(stored.logs)) < 10_000
    assert stored.as_read().serialize() == first[0].serialize()


def test_a_state_the_migration_flagged_lists_nothing_more() -> None:
    # Given a state whose logs the migration copied (it flags them: readers query the partition)
    state = RecipientStateModel(delivery_id="d1", sk="r#r1", recipient_id="r1", logs_overflow=True)
    # When a log is kept
    pages = keep_log(state, "2026-11-23T10:00:00.000Z#later")
    # Then nothing is listed or spilled
    assert pages == [] and state.logs is None and state.log_pages is None


def test_an_overflowing_recipient_is_still_erased_entirely() -> None:
    # Given a recipient with more logs than its state lists, and another recipient
    store = seeded_store()
    for n in range(MAX_RECIPIENT_LOGS + 5):
        hit(store, "r1", at=T0 + timedelta(seconds=n))
    hit(store, "r2", "1", person="p2")
    clock = Clock(RUN_AT)
    workflow(store, clock, batch_size=50).run("run-1", "schedule")
    assert store.indicators[("d1", "r#r1")].log_pages == 1
    assert any(key[1].startswith("l#r1#") for key in store.indicators)
    # When r1 asks to be erased and the next run goes by
    store.request_erasure("r1")
    clock.now += timedelta(minutes=10)
    workflow(store, clock).run("run-2", "schedule")
    # Then none of r1's logs is left, and r2's are
    assert {log.recipient_id for log in store.logs.values()} == {"r2"}
    assert not any(key[1].startswith("l#r1#") for key in store.indicators)
    assert store.erasures_done["e-1"].logs_deleted == MAX_RECIPIENT_LOGS + 5


def listed_and_spilled(store: FakeWorkflowStore) -> dict[tuple[str, str], list[str]]:
    """Each recipient's keys as the state lists them and its pages hold them, repeats kept."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (delivery_id, sk), item in store.indicators.items():
        if sk.startswith(("r#", "l#")) and item.logs:
            found[(delivery_id, str(item.recipient_id))] += str(item.logs).split()
    return {key: sorted(sks) for key, sks in found.items()}


def killed_then_rerun(operation: str, nth: int) -> FakeWorkflowStore | None:
    """The campaign's store after a run killed at the nth call of ``operation`` (nothing after it
    runs) and a rerun once the lock expired; None when the run made fewer calls."""
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    store.fault = lambda op, count: (op, count) == (operation, nth)
    with contextlib.suppress(Crash):
        workflow(store, clock, batch_size=2).run("killed", "schedule")
        return None
    store.restart()
    clock.now += timedelta(hours=1)
    workflow(store, clock, batch_size=2).run("rerun", "schedule")
    return store


@pytest.mark.parametrize("operation", ["put_item", "put_pending_chunk", "complete_worker_pending"])
def test_a_crash_at_any_call_while_keys_spill_to_pages_lists_each_key_once(
    operation: str, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given states that list two keys at most, so the campaign's busy recipients spill to pages
    monkeypatch.setattr(recipient_log_pages, "MAX_RECIPIENT_LOGS", 2)
    # When a run dies at each call of the operation in turn, and the next one goes
    stores = itertools.takewhile(
        lambda store: store is not None, (killed_then_rerun(operation, nth) for nth in itertools.count(1))
    )
    tried = 0
    for store in stores:
        assert store is not None
        tried += 1
        # Then every log is listed once, in its state or in one page, and some did spill
        found, expected = listed_and_spilled(store), logs_by_recipient(store)
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call while log keys spill to pages, then run again",
            1,
            "the pages spilled went with their states through the pending batch: replayed or recomputed",
            sum(len(set(sks) - set(found.get(key, ()))) for key, sks in expected.items()),
            sum(len(sks) - len(set(sks)) for sks in found.values()),
        )
        assert found == expected, f"crash at {operation} call {tried}"
        assert any(sk.startswith("l#") for _, sk in store.indicators)
    assert tried > 0
