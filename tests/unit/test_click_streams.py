"""Click streams kept by the tracking workflow: top paths and link-to-link transitions, exactly once.

The workflow keeps one ``ClickStreamsModel`` item per delivery, moving a recipient from their old path
to their new one whenever a batch changes it. Every expectation below is either counted by hand or,
in the property test, recomputed from the raw events by brute force.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count, pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.consolidate import batch
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import timeutil
from functions.shared.models import TrackedUrlModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RUN_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
# url id -> (category, tracked)
URLS = {
    "1": ("click", True),
    "2": ("click", True),
    "3": ("click", True),
    "4": ("opt_out", True),
    "5": ("click", False),
}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Audience:
    """Raw events for one delivery, with unique ids, kept for the brute-force count."""

    def __init__(self, store: FakeWorkflowStore) -> None:
        self.store = store
        self.events: list[RawEvent] = []
        self._ids = count()

    def click(self, recipient: str, url_id: str, second: int, *, proof: bool = False) -> None:
        self._add(recipient, url_id, second, proof=proof)

    def open(self, recipient: str, second: int) -> None:
        self._add(recipient, None, second)

    def _add(self, recipient: str, url_id: str | None, second: int, *, proof: bool = False) -> None:
        event = RawEvent(
            event_id=f"e{next(self._ids):07d}",
            kind="click" if url_id else "open",
            delivery_id="d1",
            recipient_id=recipient,
            url_id=url_id,
            at=T0 + timedelta(seconds=second),
            user_agent=CHROME,
            person_id=f"person-{recipient}" if url_id else None,
            ip="203.0.113.0",
            proof=proof,
        )
        self.events.append(event)
        self.store.add_raw(event)


def seeded_store() -> FakeWorkflowStore:
    store = FakeWorkflowStore()
    for url_id, (category, tracked) in URLS.items():
        store.add_url(
            TrackedUrlModel(
                delivery_id="d1",
                url_id=url_id,
                url=f"https://shop.example/{url_id}",
                label=f"link {url_id}",
                category=category,
                tracked=tracked,
            )
        )
    return store


def run(
    store: FakeWorkflowStore, clock: Clock | None = None, batch_size: int = 100, name: str = "run"
) -> Any:
    workflow = TrackingWorkflow(store, WorkflowConfig(batch_size=batch_size), clock=clock or Clock(RUN_AT))
    return workflow.run(name, "schedule")


def streams(store: FakeWorkflowStore) -> dict[str, Any]:
    item = store.indicators.get(("d1", "streams"))
    if item is None:
        return {"paths": {}, "other_paths": 0, "transitions": {}, "other_transitions": 0}
    return {
        "paths": {k: int(v) for k, v in item.paths.as_dict().items() if int(v)},
        "other_paths": int(item.other_paths),
        "transitions": {k: int(v) for k, v in item.transitions.as_dict().items() if int(v)},
        "other_transitions": int(item.other_transitions),
    }


def brute_force(events: list[RawEvent]) -> dict[str, Any]:
    """Paths and transitions straight from the raw events, the way the contract describes them."""
    steps: dict[str, list[str]] = {}
    for event in events:
        if event.proof or event.url_id is None or URLS[event.url_id] != ("click", True):
            continue
        steps.setdefault(event.recipient_id, []).append(f"{timeutil.iso(event.at)}|{event.url_id}")
    paths: Counter[str] = Counter()
    transitions: Counter[str] = Counter()
    for recipient_steps in steps.values():
        links: list[str] = []
        for step in sorted(recipient_steps)[: batch.MAX_PATH]:
            url_id = step.split("|")[1]
            if not links or links[-1] != url_id:
                links.append(url_id)
        cut = links[: batch.MAX_STREAM_STEPS] + (["…"] if len(links) > batch.MAX_STREAM_STEPS else [])
        paths[">".join(cut)] += 1
        transitions.update(f"{a}>{b}" for a, b in pairwise(links))
    return {"paths": dict(paths), "other_paths": 0, "transitions": dict(transitions), "other_transitions": 0}


# --- by hand ----------------------------------------------------------------------------------


def test_paths_and_transitions_follow_each_recipients_clicks_in_time_order() -> None:
    # Given five recipients' clicks
    store = seeded_store()
    audience = Audience(store)
    audience.open("ann", 0)
    audience.click("ann", "1", 10)
    audience.click("ann", "2", 20)
    audience.click("ann", "2", 21)  # a double click is one step
    audience.click("ann", "3", 30)
    audience.click("bob", "2", 15)  # clicked before ann's first click, recorded later: time order counts
    audience.click("bob", "1", 5)
    audience.click("cy", "1", 40)
    audience.click("cy", "4", 41)  # an opt-out link is not a step of the stream
    audience.click("cy", "2", 42)
    audience.click("dee", "2", 50)
    audience.click("dee", "5", 51)  # an untracked link is not counted at all
    audience.click("eve", "1", 60, proof=True)  # nor is a proof
    audience.open("fay", 70)  # an open only: no path

    # When the workflow consolidates them
    assert run(store).status == "succeeded"

    # Then ann 1>2>3, bob 1>2, cy 1>2, dee 2; moves 1>2 three times, 2>3 once
    assert streams(store) == {
        "paths": {"1>2>3": 1, "1>2": 2, "2": 1},
        "other_paths": 0,
        "transitions": {"1>2": 3, "2>3": 1},
        "other_transitions": 0,
    }


def test_a_late_click_moves_its_recipient_from_the_old_path_to_the_new_one() -> None:
    # Given ann's path 2>3 already consolidated
    store = seeded_store()
    audience = Audience(store)
    audience.click("ann", "2", 3590)
    audience.click("ann", "3", 3595)
    clock = Clock(RUN_AT)
    run(store, clock, name="run-1")
    assert streams(store)["paths"] == {"2>3": 1}

    # When a click timed before them becomes visible after that run (a slow write) and the next run counts it
    audience.click("ann", "1", 3580)
    clock.now += timedelta(hours=1)
    assert run(store, clock, name="run-2").events_processed == 1

    # Then ann counts under 1>2>3 only, and the 2>3 move she made is still counted once
    assert streams(store) == {
        "paths": {"1>2>3": 1},
        "other_paths": 0,
        "transitions": {"1>2": 1, "2>3": 1},
        "other_transitions": 0,
    }
    # And, nobody being counted as "other", the path nobody follows any more is forgotten
    assert "2>3" not in store.indicators[("d1", "streams")].paths.as_dict()


def test_a_long_path_is_counted_cut_short_with_every_move() -> None:
    store = seeded_store()
    audience = Audience(store)
    links = ["1", "2", "3"] * 5  # 15 links, no repeats in a row
    for second, url_id in enumerate(links):
        audience.click("ann", url_id, second)
    run(store)
    expected_key = ">".join(links[: batch.MAX_STREAM_STEPS]) + ">…"
    assert streams(store)["paths"] == {expected_key: 1}
    assert sum(streams(store)["transitions"].values()) == len(links) - 1


def test_beyond_the_cap_new_paths_count_as_other_and_leave_exactly_where_they_were_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given room for two distinct paths and two transitions
    monkeypatch.setattr(batch, "MAX_STREAM_ENTRIES", 2)
    store = seeded_store()
    audience = Audience(store)
    audience.click("ann", "1", 10)  # "1"
    audience.click("bob", "2", 20)  # "2"
    audience.click("cy", "3", 30)  # "3": no room, other
    clock = Clock(RUN_AT)
    run(store, clock, name="run-1")
    first = streams(store)  # shards are read one after another: which two come first is theirs to say
    assert sorted(first["paths"].values()) == [1, 1] and first["other_paths"] == 1

    # When every path changes: cy's becomes 3>1, bob's 1>2 (a late click), ann's 1>3
    audience.click("cy", "1", 3590)
    audience.click("bob", "1", 15)
    audience.click("ann", "3", 3595)
    clock.now += timedelta(minutes=1)
    run(store, clock, name="run-2")

    # Then each recipient left the count they were in (two known paths at zero, "other" down by one)
    # and, the two names being taken, their three new paths count as "other"
    second = streams(store)
    assert (second["paths"], second["other_paths"]) == ({}, 3)
    item = store.indicators[("d1", "streams")]
    assert sorted(int(v) for v in item.paths.as_dict().values()) == [0, 0]
    # Of the moves 3>1, 1>2 and 1>3 two are named and one is "other"
    assert len(second["transitions"]) == 2 and second["other_transitions"] == 1
    assert set(second["transitions"]) < {"3>1", "1>2", "1>3"}


# --- exactly once -----------------------------------------------------------------------------


SCENARIO = (
    ("ann", "1"), ("bob", "2"), ("ann", "2"), ("cy", "3"), ("bob", "1"), ("ann", "3"), ("cy", "3"),
    ("dee", "1"), ("cy", "1"), ("ann", "1"), ("bob", "3"), ("dee", "2"),
)  # fmt: skip


def scenario(store: FakeWorkflowStore) -> Audience:
    audience = Audience(store)
    for second, (recipient, url_id) in enumerate(SCENARIO):
        audience.click(recipient, url_id, second * 7)
    return audience


@pytest.mark.parametrize(
    "operation", ["load_indicators", "save_worker_pending", "put_item", "complete_worker_pending"]
)
def test_a_crash_anywhere_then_a_rerun_gives_the_clean_click_streams(operation: str) -> None:
    clean = seeded_store()
    scenario(clean)
    run(clean, batch_size=2, name="clean")
    expected = streams(clean)
    assert expected["paths"], "the scenario must produce click streams"
    crashes = 0
    for nth in range(1, 80):
        # Given a run that dies at the nth call of an operation
        store = seeded_store()
        scenario(store)
        clock = Clock(RUN_AT)
        store.fault = lambda op, calls, nth=nth: op == operation and calls == nth
        try:
            run(store, clock, batch_size=2, name="crashing")
        except Crash:
            crashes += 1
        else:
            break
        # When a new process runs again after the lock expired
        store.restart()
        clock.now += timedelta(hours=1)
        run(store, clock, batch_size=2, name="rerun")
        # Then the click streams are those of one clean run
        assert streams(store) == expected, f"crash at {operation} call {nth}"
    assert crashes > 0


def test_a_second_run_changes_no_click_stream() -> None:
    store = seeded_store()
    scenario(store)
    run(store, name="run-1")
    before = store.snapshot()
    assert run(store, name="run-2").events_processed == 0
    assert store.snapshot() == before


clicks = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "cy", "dee"]),
        st.sampled_from(sorted(URLS)),
        st.integers(min_value=0, max_value=3000),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(clicks=clicks, batch_size=st.integers(min_value=1, max_value=9))
def test_any_batching_gives_the_brute_force_count(
    clicks: list[tuple[str, str, int, bool]], batch_size: int
) -> None:
    # Given any clicks, in whatever order the shards deliver them, and any batch size
    store = seeded_store()
    audience = Audience(store)
    for recipient, url_id, second, proof in clicks:
        audience.click(recipient, url_id, second, proof=proof and second % 5 == 0)
    # When the workflow consolidates them
    run(store, batch_size=batch_size)
    # Then paths and transitions are what a direct count of the raw events gives
    assert streams(store) == brute_force(audience.events)


@settings(max_examples=60, deadline=None)
@given(
    clicks=clicks, batch_size=st.integers(min_value=1, max_value=9), cap=st.integers(min_value=1, max_value=3)
)
def test_under_a_cap_every_named_count_is_exact_and_the_rest_is_other(
    clicks: list[tuple[str, str, int, bool]], batch_size: int, cap: int
) -> None:
    # Given room for only a few paths and transitions, and any clicks in any batches
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "MAX_STREAM_ENTRIES", cap)
        store = seeded_store()
        audience = Audience(store)
        for recipient, url_id, second, _ in clicks:
            audience.click(recipient, url_id, second)
        run(store, batch_size=batch_size)
    found, truth = streams(store), brute_force(audience.events)
    # Then whatever is named is counted exactly, and everything else is "other"
    for kind in ("paths", "transitions"):
        assert len(found[kind]) <= cap
        assert all(truth[kind][key] == n for key, n in found[kind].items())
        assert found[f"other_{kind}"] == sum(truth[kind].values()) - sum(found[kind].values())


# --- the pure pieces --------------------------------------------------------------------------


def test_stream_of_a_path() -> None:
    path = ["2026-11-23T09:00:01.000Z|4", "2026-11-23T09:00:02.000Z|4", "2026-11-23T09:00:03.000Z|7"]
    assert batch.stream_of(path) == ("4>7", ["4>7"])
    assert batch.stream_of([]) == (None, [])


def test_a_path_of_exactly_ten_links_is_not_cut_short_and_one_of_eleven_is() -> None:
    # Given a recipient's path over ten distinct links, and one over eleven
    ten = [f"2026-11-23T09:00:{n:02d}Z|{n}" for n in range(1, 11)]
    eleven = [*ten, "2026-11-23T09:00:11Z|11"]
    # When their click-streams keys are made
    # Then ten links are a whole path, eleven the first ten and the cut-short mark
    assert batch.stream_of(ten)[0] == "1>2>3>4>5>6>7>8>9>10"
    assert batch.stream_of(eleven)[0] == "1>2>3>4>5>6>7>8>9>10>…"


def test_a_full_count_map_makes_room_for_a_new_key_when_nobody_is_in_other() -> None:
    # Given a count map capped at two keys, one of them back at zero, and nobody counted as "other"
    counts = batch._StreamCounts({"1>2": 1, "2>3": 0}, 0, cap=2)
    # When a new key comes
    counts.add("3>4", 1)
    # Then the key at zero made room for it
    assert (counts.settled(), counts.other) == ({"1>2": 1, "3>4": 1}, 0)
