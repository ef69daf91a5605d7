"""Human and machine traffic in the tracking workflow: the human counters, and the honeypot burst
reclassifying hits exactly once whatever the order, the shard, the run or the crash."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.consolidate.batch import BURST_REASON
from functions.shared.limits import MAX_NAME_BYTES
from functions.shared.models import MessageModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import CHROME, T0, Clock, seeded_store, workflow

H = T0 + timedelta(minutes=10)  # the honeypot hit's time in the burst scenarios
MPP = "Mozilla/5.0"


def add(
    store: FakeWorkflowStore,
    event_id: str,
    recipient: str,
    url_id: str | None,
    at: datetime,
    *,
    person: str | None = None,
    machine: str | None = None,
    client: str | None = None,
    honeypot: bool = False,
    ua: str = CHROME,
    window: int = 30,
) -> str:
    """A raw event with the redirect's verdict; its shard."""
    model = store.add_raw(
        RawEvent(
            event_id,
            "click" if url_id or honeypot else "open",
            "d1",
            recipient,
            url_id,
            at,
            ua,
            person,
            "203.0.113.0",
            False,
            machine=machine,
            machine_reason=f"{machine} signal" if machine else None,
            client_key=client,
            honeypot=honeypot,
            burst_seconds=window if honeypot else None,
        )
    )
    return str(model.shard)


def stats(store: FakeWorkflowStore) -> dict[str, Any]:
    item = store.indicators[("d1", "stats")]
    return {
        "all": {
            n: int(getattr(item, n)) for n in ("opens", "total_opens", "clicks", "total_clicks", "opt_outs")
        },
        "human": {k: int(v) for k, v in item.human.as_dict().items()},
        "machine": item.machine.as_dict(),
    }


def test_human_figures_leave_machine_hits_out_and_all_traffic_unchanged() -> None:
    # Given a person who opens and clicks, an MPP prefetch, a bot's click and a person's opt-out
    store = seeded_store()
    add(store, "a1", "r1", None, T0, client="k1")
    add(store, "a2", "r1", "1", T0 + timedelta(seconds=60), person="p1", client="k1")
    add(store, "a3", "r2", None, T0, machine="apple_mpp", client="k2", ua=MPP)
    add(store, "a4", "r3", "1", T0, person="p3", machine="bot", client="k3", ua="python-requests/2.31")
    add(store, "a5", "r4", "3", T0, person="p4", client="k4")
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then every hit counts in all traffic, only the people's in human, the machines' in machine
    figures = stats(store)
    assert figures["all"] == {"opens": 4, "total_opens": 2, "clicks": 2, "total_clicks": 2, "opt_outs": 1}
    assert figures["human"] == {
        "opens": 2,
        "total_opens": 1,
        "clicks": 1,
        "person_clicks": 1,
        "total_clicks": 1,
        "opt_outs": 1,
        "mirror_page_views": 0,
    }
    assert figures["machine"] == {"total_opens": 1, "total_clicks": 1, "by_kind": {"apple_mpp": 1, "bot": 1}}
    url = store.indicators[("d1", "url#1")]
    assert (url.clicks, url.distinct_clicks, url.human_clicks, url.human_distinct_clicks) == (2, 2, 1, 1)
    hour = store.indicators[("d1", "hour#2026-11-23T09")]
    assert (hour.opens, hour.clicks, hour.human_opens, hour.human_clicks) == (2, 2, 1, 1)
    assert store.indicators[("d1", "stats")].human_breakdowns.as_dict()["domain"] == {
        "gmail.com": {"opens": 1, "clicks": 1},  # r1
        "example.org": {"opens": 1, "clicks": 0},  # r4
    }


def test_a_persons_mirror_page_views_count_in_the_human_figures_and_a_bots_do_not() -> None:
    # Given a person viewing the message's mirror page (link 4) twice and a bot viewing it once
    store = seeded_store()
    add(store, "m1", "r1", "4", T0, person="p1", client="k1")
    add(store, "m2", "r1", "4", T0 + timedelta(seconds=60), person="p1", client="k1")
    add(store, "m3", "r3", "4", T0, person="p3", machine="bot", client="k3", ua="python-requests/2.31")
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then all traffic counts the three views, the human figures the person's two, as no open or click
    assert store.indicators[("d1", "stats")].mirror_page_views == 3
    human = stats(store)["human"]
    assert human["mirror_page_views"] == 2
    assert human["total_opens"] == human["total_clicks"] == human["opt_outs"] == 0


def test_a_person_clicking_again_in_a_later_run_a_link_among_those_clicked_before_is_no_new_distinct_click() -> (
    None
):
    # Given a person who clicked links 1 and 2 in a first run (their recipient state remembers both)
    store = seeded_store()
    add(store, "c1", "r1", "1", T0, person="p1", client="k1")
    add(store, "c2", "r1", "2", T0 + timedelta(seconds=5), person="p1", client="k1")
    clock = Clock(T0 + timedelta(minutes=1))
    workflow(store, clock).run("run-1", "schedule")
    # When they click link 1 again and the next run consolidates it
    add(store, "c3", "r1", "1", T0 + timedelta(minutes=2), person="p1", client="k1")
    clock.now = T0 + timedelta(minutes=3)
    workflow(store, clock).run("run-2", "schedule")
    # Then link 1 has two human clicks from one person, link 2 one
    url1, url2 = store.indicators[("d1", "url#1")], store.indicators[("d1", "url#2")]
    assert (url1.human_clicks, url1.human_distinct_clicks) == (2, 1)
    assert (url2.human_clicks, url2.human_distinct_clicks) == (1, 1)
    assert stats(store)["human"]["clicks"] == 1


def test_a_human_click_without_an_open_makes_a_human_open_and_a_machine_click_does_not() -> None:
    # Given one person's click and one scanner's click, neither with an open
    store = seeded_store()
    add(store, "b1", "r1", "1", T0, person="p1", client="k1")
    add(store, "b2", "r2", "1", T0, person="p2", machine="scanner", client="k2")
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then both are opens in all traffic, only the person's a human open
    figures = stats(store)
    assert figures["all"]["opens"] == 2
    assert figures["human"]["opens"] == 1
    assert figures["human"]["clicks"] == 1


BURST_HUMAN = {
    "opens": 1,  # r5 still opened as a person (b4 outside the window, b3 from another address)
    "total_opens": 1,  # b4
    "clicks": 1,  # b3
    "person_clicks": 1,
    "total_clicks": 1,
    "opt_outs": 0,
    "mirror_page_views": 0,
}
BURST_ALL = {"opens": 1, "total_opens": 2, "clicks": 1, "total_clicks": 2, "opt_outs": 0}
BURST_MACHINE = {"total_opens": 1, "total_clicks": 1, "by_kind": {"scanner": 3}}  # b1, b2, the honeypot hit


def burst_hits(store: FakeWorkflowStore, offsets: tuple[int, int, int]) -> list[str]:
    """r5's hits around a honeypot hit at H: b1 (open) and b2 (click) from the honeypot's address within
    30 s, b3 (click) from another address, b4 (open) from the same address 90 s after."""
    first, second, third = offsets
    return [
        add(store, "b1", "r5", None, H + timedelta(seconds=first), client="k5"),
        add(store, "b2", "r5", "1", H + timedelta(seconds=second), person="p5", client="k5"),
        add(store, "b3", "r5", "2", H + timedelta(seconds=third), person="p5", client="kx"),
        add(store, "b4", "r5", None, H + timedelta(seconds=90), client="k5"),
    ]


def honeypot(store: FakeWorkflowStore, event_id: str = "hp", at: datetime = H) -> str:
    return add(store, event_id, "r5", None, at, client="k5", honeypot=True, machine="scanner")


def assert_burst_counted(store: FakeWorkflowStore) -> None:
    figures = stats(store)
    assert figures["all"] == BURST_ALL
    assert figures["human"] == BURST_HUMAN
    assert figures["machine"] == BURST_MACHINE
    url1, url2 = store.indicators[("d1", "url#1")], store.indicators[("d1", "url#2")]
    assert (url1.clicks, url1.human_clicks, url1.human_distinct_clicks) == (1, 0, 0)
    assert (url2.clicks, url2.human_clicks, url2.human_distinct_clicks) == (1, 1, 1)
    # The human click streams follow r5's human click alone (b3 on link 2)
    human_streams = store.indicators[("d1", "streams#human")]
    assert {k: int(v) for k, v in human_streams.paths.as_dict().items()} == {"2": 1}
    machines = {sk.split("#")[-1]: (log.machine, log.machine_reason) for (_, sk), log in store.logs.items()}
    assert machines["b1"] == ("scanner", BURST_REASON)
    assert machines["b2"] == ("scanner", BURST_REASON)
    assert machines["b3"] == (None, None)
    assert machines["b4"] == (None, None)
    honeypot_log = next(log for (_, sk), log in store.logs.items() if sk.endswith("#hp"))
    assert (honeypot_log.type, honeypot_log.url_id, honeypot_log.machine) == ("click", None, "scanner")


@pytest.mark.parametrize("batch_size", [1, 100])
def test_a_honeypot_hit_in_the_same_run_makes_its_burst_scanner_hits_in_any_batch_order(
    batch_size: int,
) -> None:
    # Given the burst's hits and the honeypot hit in one run, before and after it: one message, so
    # one shard (raw events are sharded by recipient), whatever the number of workers
    store = seeded_store()
    shards = {*burst_hits(store, (-10, 5, -7)), honeypot(store)}
    assert len(shards) == 1
    # When the workflow runs (one event a batch: the shards' batches come in any order)
    workflow(store, batch_size=batch_size).run("run-1", "schedule")
    # Then the hits within 30 s from the honeypot's address are scanner hits, the others human
    assert_burst_counted(store)


def test_a_honeypot_hit_consolidated_before_the_burst_hits_makes_them_scanner_hits_from_the_start() -> None:
    # Given a run that consolidated the honeypot hit alone
    store = seeded_store()
    honeypot(store)
    workflow(store, Clock(H + timedelta(seconds=1))).run("run-1", "schedule")
    # When the burst's hits come after it and a later run consolidates them
    burst_hits(store, (2, 5, 3))
    workflow(store, Clock(H + timedelta(hours=1))).run("run-2", "schedule")
    # Then they are counted as the scanner's from the start
    assert_burst_counted(store)


def late_honeypot_runs(store: FakeWorkflowStore) -> Clock:
    """A first run that consolidated the burst's hits as a person's; the honeypot hit comes after."""
    clock = Clock(H - timedelta(seconds=1))
    burst_hits(store, (-10, -5, -7))
    workflow(store, clock).run("run-1", "schedule")
    assert stats(store)["human"]["total_clicks"] == 2  # b2 and b3, both a person's so far
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    return clock


def test_a_honeypot_hit_in_a_later_run_reclassifies_the_consolidated_hits_once() -> None:
    # Given hits consolidated as a person's by an earlier run, then a honeypot hit
    store = seeded_store()
    clock = late_honeypot_runs(store)
    # When the next run consolidates the honeypot hit, and another runs after it
    workflow(store, clock).run("run-2", "schedule")
    assert_burst_counted(store)
    once = store.snapshot()
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-3", "schedule")
    # Then the earlier hits' logs and every indicator moved from human to scanner, and only once
    assert_burst_counted(store)
    assert store.snapshot() == once


def test_a_later_honeypot_hit_takes_the_only_human_open_of_its_hour_back_to_zero() -> None:
    # Given a run that consolidated one open as a person's, the only open of its hour (09:00)
    store = seeded_store()
    add(store, "o1", "r5", None, H - timedelta(seconds=10), client="k5")
    clock = Clock(H - timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    hour = store.indicators[("d1", "hour#2026-11-23T09")]
    assert (hour.opens, hour.human_opens) == (1, 1)
    # When a honeypot hit from its address 10 s later is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the hour keeps the open in all traffic and counts no human open any more
    hour = store.indicators[("d1", "hour#2026-11-23T09")]
    assert (hour.opens, hour.human_opens) == (1, 0)


def test_a_later_honeypot_hit_reclassifies_its_burst_after_another_hit_of_the_same_batch() -> None:
    # Given hits consolidated as a person's by an earlier run, then a hit of the same recipient from
    # another address half a second before the honeypot hit: the next run reads both in one batch, that
    # hit first
    store = seeded_store()
    clock = late_honeypot_runs(store)
    add(store, "other", "r5", None, H - timedelta(milliseconds=500), client="kx")
    # When the next run consolidates them
    workflow(store, clock).run("run-2", "schedule")
    # Then the honeypot hit still makes its burst's earlier hits the scanner's
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert (machines["b1"], machines["b2"], machines["other"]) == ("scanner", "scanner", None)
    assert stats(store)["human"]["total_clicks"] == 1  # b3 alone


def test_a_later_honeypot_hit_reclassifies_the_earlier_hits_within_its_own_window() -> None:
    # Given an open consolidated as a person's by an earlier run, 45 s before a honeypot hit whose
    # window is 60 s (the default is 30)
    store = seeded_store()
    add(store, "o1", "r5", None, H - timedelta(seconds=45), client="k5")
    clock = Clock(H - timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    add(store, "hp", "r5", None, H, client="k5", honeypot=True, machine="scanner", window=60)
    # When the next run consolidates the honeypot hit
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the open is the scanner's
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert machines["o1"] == "scanner"
    assert stats(store)["human"]["total_opens"] == 0


def test_a_hit_outside_the_window_stays_human() -> None:
    # Given a hit from the honeypot's address 31 s before it (the window is 30 s)
    store = seeded_store()
    add(store, "c1", "r5", None, H - timedelta(seconds=31), client="k5")
    honeypot(store)
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then it stays a person's open
    figures = stats(store)
    assert figures["human"]["total_opens"] == 1
    assert figures["machine"] == {"total_opens": 0, "total_clicks": 0, "by_kind": {"scanner": 1}}


LATE_FAULT_POINTS = [
    "read_raw",
    "load_indicators",
    "load_logs",
    "save_worker_pending",
    "put_item",
    "complete_worker_pending",
]


@pytest.mark.parametrize("operation", LATE_FAULT_POINTS)
def test_a_crash_anywhere_while_a_late_honeypot_reclassifies_gives_the_clean_totals(
    operation: str, reliability: Any
) -> None:
    clean = seeded_store()
    workflow(clean, late_honeypot_runs(clean)).run("run-2", "schedule")
    expected = clean.snapshot()
    crashes = 0
    for nth in range(1, 80):
        # Given hits consolidated as a person's, and the run that reads the honeypot hit dying at the
        # nth call of an operation
        store = seeded_store()
        clock = late_honeypot_runs(store)
        store.restart()
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock, batch_size=1).run("crashing", "schedule")
        except Crash:
            crashes += 1
        else:
            break
        # When a new process runs again once the lock has expired
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = workflow(store, clock, batch_size=1).run("rerun", "schedule")
        # Then the burst is reclassified exactly once: the clean run's logs and indicators
        equal = store.snapshot() == expected
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call while a late honeypot hit reclassifies "
            "consolidated hits (every call in turn), then run again",
            1,
            "rewritten logs and the indicator changes go through the pending batch together: the rerun "
            "reclassified the burst once",
            0 if equal else 1,
            0,
        )
        assert rerun.status == "succeeded"
        assert equal, f"crash at {operation} call {nth}"
        assert_burst_counted(store)
    assert crashes > 0


def test_a_bot_hit_in_a_later_honeypot_burst_moves_from_bot_to_scanner() -> None:
    # Given a bot's click consolidated by a first run, from the address that then hits the honeypot
    store = seeded_store()
    clock = Clock(H - timedelta(seconds=1))
    add(store, "d1b", "r5", "1", H - timedelta(seconds=5), person="p5", machine="bot", client="k5")
    workflow(store, clock).run("run-1", "schedule")
    assert stats(store)["machine"]["by_kind"] == {"bot": 1}
    # When the honeypot hit is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the click counts as the scanner's: still one machine click, no human figure moved
    figures = stats(store)
    assert figures["machine"] == {"total_opens": 0, "total_clicks": 1, "by_kind": {"scanner": 2}}
    assert figures["human"] == {}
    assert figures["all"]["total_clicks"] == 1


def test_a_later_honeypot_hit_reclassifies_hits_on_two_links_across_an_hour_boundary() -> None:
    # Given a run that consolidated, as a person's, clicks on links 1 and 2 from one address: at 09:59:50
    # and 10:00:00, on either side of an hour boundary
    store = seeded_store()
    hour = T0 + timedelta(hours=1)  # 10:00
    add(store, "d1-first", "r5", "1", hour - timedelta(seconds=10), person="p5", client="k5")
    add(store, "d1-second", "r5", "2", hour, person="p5", client="k5")
    add(store, "d1-other", "r6", "1", hour - timedelta(seconds=20), person="p6", client="k6")  # a person
    clock = Clock(hour + timedelta(seconds=2))
    workflow(store, clock).run("run-1", "schedule")
    assert stats(store)["human"]["total_clicks"] == 3
    # When a honeypot hit from that address at 10:00:05 is consolidated by the next run
    honeypot(store, at=hour + timedelta(seconds=5))
    clock.now = hour + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then both of r5's clicks are the scanner's: every item they counted in, the 09:00 hour's and link
    # 1's too, lost their human count and kept its all-traffic count; r6's click stays a person's
    counts = {
        url_id: (url.clicks, url.human_clicks, url.human_distinct_clicks)
        for url_id in ("1", "2")
        for url in [store.indicators[("d1", f"url#{url_id}")]]
    }
    assert counts == {"1": (2, 1, 1), "2": (1, 0, 0)}
    hours = {
        sk: (item.clicks, item.human_clicks)
        for sk in ("hour#2026-11-23T09", "hour#2026-11-23T10")
        for item in [store.indicators[("d1", sk)]]
    }
    assert hours == {"hour#2026-11-23T09": (2, 1), "hour#2026-11-23T10": (1, 0)}
    figures = stats(store)
    assert (figures["all"]["total_clicks"], figures["human"]["total_clicks"]) == (3, 1)
    assert (figures["human"]["opens"], figures["human"]["clicks"]) == (1, 1)  # r6 alone
    assert figures["machine"]["by_kind"] == {"scanner": 3}
    human_streams = store.indicators[("d1", "streams#human")]
    assert {k: int(v) for k, v in human_streams.paths.as_dict().items()} == {"1": 1}


def test_a_honeypot_hit_consolidated_first_marks_the_hits_within_its_own_window_from_its_client() -> None:
    # Given honeypot hits consolidated in a first run: one from another address, then one from k5 with a
    # 10 s window (the operator's setting when it was recorded)
    store = seeded_store()
    for event_id, client, at, window in (
        ("hp-other", "k9", H - timedelta(seconds=1), 30),
        ("hp-k5", "k5", H, 10),
    ):
        store.add_raw(
            RawEvent(
                event_id, "click", "d1", "r5", None, at, CHROME, None, "203.0.113.0", False,
                machine="scanner", machine_reason="honeypot", client_key=client, honeypot=True,
                burst_seconds=window,
            )
        )  # fmt: skip
    workflow(store, Clock(H + timedelta(seconds=1))).run("run-1", "schedule")
    # When k5's hits 10 s and 20 s after it are consolidated by the next run
    add(store, "at-10s", "r5", "1", H + timedelta(seconds=10), person="p5", client="k5")
    add(store, "at-20s", "r5", "2", H + timedelta(seconds=20), person="p5", client="k5")
    workflow(store, Clock(H + timedelta(hours=1))).run("run-2", "schedule")
    # Then the one at the edge of its window is the scanner's, the one past it a person's
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert (machines["at-10s"], machines["at-20s"]) == ("scanner", None)
    assert stats(store)["human"]["total_clicks"] == 1


def test_a_hit_just_before_a_honeypot_hit_in_the_same_batch_is_the_scanners() -> None:
    # Given a hit and, 5 s later, a honeypot hit from the same address: one recipient's, so in one shard,
    # read in one batch
    store = seeded_store()
    add(store, "probe", "r5", None, H - timedelta(hours=2), client="elsewhere")
    assert add(store, "first", "r5", "1", H - timedelta(seconds=5), person="p5", client="k5") == honeypot(
        store, "trap", at=H
    )
    # When one run consolidates them
    workflow(store, Clock(H + timedelta(seconds=1))).run("run-1", "schedule")
    # Then the click is the scanner's
    url = store.indicators[("d1", "url#1")]
    assert (url.clicks, url.human_clicks) == (1, 0)
    assert stats(store)["machine"]["by_kind"] == {"scanner": 2}


def test_of_two_bot_hits_only_the_one_in_a_later_honeypot_burst_moves_to_scanner() -> None:
    # Given two bot clicks consolidated by a first run: one from the honeypot's address, one from another
    store = seeded_store()
    clock = Clock(H - timedelta(seconds=1))
    add(store, "bot-k5", "r5", "1", H - timedelta(seconds=5), person="p5", machine="bot", client="k5")
    add(store, "bot-k9", "r5", "1", H - timedelta(seconds=4), person="p5", machine="bot", client="k9")
    workflow(store, clock).run("run-1", "schedule")
    # When the honeypot hit is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then one bot hit is left
    assert stats(store)["machine"]["by_kind"] == {"bot": 1, "scanner": 2}


def test_a_honeypot_hit_recorded_without_a_window_uses_the_default_30_seconds() -> None:
    # Given a honeypot hit recorded without a window (by a redirect older than the setting), and a
    # click from its address 25 s before it
    store = seeded_store()
    add(store, "before", "r5", "1", H - timedelta(seconds=25), person="p5", client="k5")
    store.add_raw(
        RawEvent(
            "hp-old", "click", "d1", "r5", None, H, CHROME, None, "203.0.113.0", False,
            machine="scanner", machine_reason="honeypot", client_key="k5", honeypot=True,
        )
    )  # fmt: skip
    # When one run consolidates them
    workflow(store, Clock(H + timedelta(seconds=1))).run("run-1", "schedule")
    # Then the click is the scanner's
    assert stats(store)["machine"]["by_kind"] == {"scanner": 2}


def test_a_later_honeypot_hit_reclassifies_the_last_100_hits_of_its_client() -> None:
    # Given 101 opens from one address within 30 s, consolidated as a person's by a first run
    store = seeded_store()
    for n in range(101):
        add(
            store,
            f"o{n:03d}",
            "r5",
            None,
            H - timedelta(seconds=20) + timedelta(milliseconds=100 * n),
            client="k5",
        )
    clock = Clock(H + timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    # When a honeypot hit from that address is consolidated by the next run
    honeypot(store, at=H + timedelta(seconds=2))
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the 100 the recipient remembers (all but the oldest) became the scanner's
    figures = stats(store)
    assert figures["machine"]["by_kind"] == {"scanner": 101}
    assert figures["human"]["total_opens"] == 1
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert (machines["o000"], machines["o001"], machines["o100"]) == (None, "scanner", "scanner")


def test_hits_without_a_client_key_do_not_crowd_out_the_hits_a_recipient_remembers() -> None:
    # Given an open from one address, then 100 opens with no address (the redirect knew none), all
    # consolidated as a person's by a first run
    store = seeded_store()
    add(store, "keyed", "r5", None, H - timedelta(seconds=20), client="k5")
    for n in range(100):
        add(store, f"n{n:03d}", "r5", None, H - timedelta(seconds=19) + timedelta(milliseconds=100 * n))
    clock = Clock(H - timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    # When a honeypot hit from that address is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the open from its address is the scanner's: only hits with a client key are remembered, so the
    # 100 without one neither pushed it out nor joined the burst
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert machines["keyed"] == "scanner"
    assert {machines[f"n{n:03d}"] for n in range(100)} == {None}
    assert stats(store)["machine"]["by_kind"] == {"scanner": 2}
    assert stats(store)["human"]["total_opens"] == 100


def test_a_page_view_from_the_honeypots_address_within_its_window_stays_a_page_view() -> None:
    # Given a page view of the web-tracking tag from an address, 5 s before a honeypot hit from it, and one
    # 5 s after it (a burst is a message's opens and clicks: the tag's events are a site's, not mail's)
    store = seeded_store()
    for event_id, at in (("before", H - timedelta(seconds=5)), ("after", H + timedelta(seconds=5))):
        store.add_raw(
            RawEvent(
                event_id, "page", "d1", "r5", None, at, CHROME, "p5", "203.0.113.0", False,
                client_key="k5", site_id="s1", via_url_id="1", page_url="https://shop.example/shoes",
            )
        )  # fmt: skip
    workflow(store, Clock(H - timedelta(seconds=1))).run("run-1", "schedule")
    # When the honeypot hit is consolidated by the next run
    honeypot(store)
    workflow(store, Clock(H + timedelta(hours=1))).run("run-2", "schedule")
    # Then both page views are counted and logged as a person's, and the scanner has its one hit
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert (machines["before"], machines["after"]) == (None, None)
    assert stats(store)["machine"]["by_kind"] == {"scanner": 1}
    assert store.indicators[("d1", "stats")].page_views == 2
    assert not store.indicators[("d1", "r#r5")].recent_hits


def test_a_later_honeypot_hit_reclassifies_a_hit_at_the_edge_of_its_window() -> None:
    # Given a click consolidated as a person's by a first run, 30 s before a honeypot hit from its address
    store = seeded_store()
    add(store, "edge", "r5", "1", H - timedelta(seconds=30), person="p5", client="k5")
    clock = Clock(H - timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    # When the next run consolidates the honeypot hit (a 30 s window)
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the click is the scanner's: the window includes its edge
    assert stats(store)["machine"]["by_kind"] == {"scanner": 2}


def test_a_later_honeypot_hit_skips_a_burst_hit_whose_log_has_expired_and_reclassifies_the_others() -> None:
    # Given two clicks from one address consolidated as a person's, the older one since gone (its raw
    # event and its log expired or erased)
    store = seeded_store()
    shard = add(store, "expired", "r5", "1", H - timedelta(seconds=20), person="p5", client="k5")
    add(store, "kept", "r5", "2", H - timedelta(seconds=10), person="p5", client="k5")
    clock = Clock(H - timedelta(seconds=1))
    workflow(store, clock).run("run-1", "schedule")
    [expired] = [key for key in store.logs if key[1].endswith("#expired")]
    del store.logs[expired]
    store.raw[shard] = [event for event in store.raw[shard] if not str(event.sk).endswith("#expired")]
    # When a honeypot hit from that address is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    run = workflow(store, clock).run("run-2", "schedule")
    # Then the run succeeds and the click whose log is there became the scanner's
    assert run.status == "succeeded"
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert machines["kept"] == "scanner"
    url2 = store.indicators[("d1", "url#2")]
    assert (url2.clicks, url2.human_clicks) == (1, 0)


def test_a_recipient_remembers_its_latest_20_honeypot_hits_whatever_order_they_come_in() -> None:
    # Given 20 honeypot hits from 20 addresses consolidated by a first run, then an older one from
    # another address by a second run
    store = seeded_store()
    clock = Clock(H + timedelta(minutes=5))
    for n in range(20):
        add(store, f"hp{n:02d}", "r5", None, H + timedelta(seconds=60 + n), client=f"c{n:02d}", honeypot=True)
    workflow(store, clock).run("run-1", "schedule")
    add(store, "hp-old", "r5", None, H, client="old", honeypot=True)
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # When clicks from the oldest address and from the latest come after them, 5 s after each
    add(store, "from-old", "r5", "1", H + timedelta(seconds=5), person="p5", client="old")
    add(store, "from-c19", "r5", "2", H + timedelta(seconds=84), person="p5", client="c19")
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-3", "schedule")
    # Then the oldest honeypot hit is forgotten (a person's click), the latest one still marks its burst
    machines = {sk.split("#")[-1]: log.machine for (_, sk), log in store.logs.items()}
    assert (machines["from-old"], machines["from-c19"]) == (None, "scanner")


def _recipients_in_shard_order(count: int) -> list[str]:
    """``count`` recipients of d1 in distinct raw-event shards, the lowest shard first."""
    from functions.shared import raw_events

    by_shard = {raw_events.shard_of("d1", f"r{n}"): f"r{n}" for n in range(100, 9, -1)}  # not r1-r9
    return [by_shard[shard] for shard in sorted(by_shard)[:count]]


def test_the_human_other_breakdown_row_keeps_its_counts_across_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.consolidate import batch
    from tests.unit.test_workflow import IPHONE

    # Given room for one browser name, and a first run counting a person's open in Chrome, then two in
    # Safari (Chrome's open goes to "other")
    monkeypatch.setattr(batch, "MAX_BREAKDOWN_NAMES", 1)
    store = seeded_store()
    # (recipients in ascending shards: a run reads its shards in order, so Safari's opens come first and
    # keep the one name; Chrome's, read last, goes to "other")
    r2, r3, r1 = _recipients_in_shard_order(3)
    add(store, "chrome", r1, None, H, client="k1")
    add(store, "safari-1", r2, None, H + timedelta(seconds=1), client="k2", ua=IPHONE)
    add(store, "safari-2", r3, None, H + timedelta(seconds=2), client="k3", ua=IPHONE)
    clock = Clock(H + timedelta(minutes=1))
    workflow(store, clock).run("run-1", "schedule")
    # When a second run counts a third Safari open
    add(store, "safari-3", "r4", None, H + timedelta(minutes=2), client="k4", ua=IPHONE)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the human "other" row still holds Chrome's open
    item = store.indicators[("d1", "stats")]
    other = {
        d: {m: int(n) for m, n in row.items()} for d, row in item.human_other_breakdowns.as_dict().items()
    }
    assert other["browser"]["opens"] == 1


def test_a_persons_open_without_a_user_agent_or_an_email_domain_counts_under_unknown_names() -> None:
    # Given a person's open without a User-Agent, from a recipient whose email domain is unknown
    store = seeded_store()
    add(store, "bare", "r-nowhere", None, H, client="k1", ua=None)  # type: ignore[arg-type]
    # When it is consolidated
    workflow(store, Clock(H + timedelta(minutes=1))).run("run-1", "schedule")
    # Then the human breakdowns and the all-traffic ones both count it under the unknown names
    item = store.indicators[("d1", "stats")]
    human, every = (
        {
            d: {name: {m: int(n) for m, n in row.items()} for name, row in rows.items()}
            for d, rows in breakdowns.as_dict().items()
        }
        for breakdowns in (item.human_breakdowns, item.breakdowns)
    )
    names = {"browser": ["Unknown"], "os": ["Unknown"], "device": ["other"], "domain": ["unknown"]}
    assert {d: sorted(rows) for d, rows in human.items()} == names
    assert {d: sorted(rows) for d, rows in every.items()} == names
    assert human["browser"]["Unknown"]["opens"] == human["domain"]["unknown"]["opens"] == 1
    assert every["browser"]["Unknown"]["opens"] == every["domain"]["unknown"]["opens"] == 1


def _refuse_each_first_put_of_these_logs(store: FakeWorkflowStore, event_ids: set[str]) -> None:
    """DynamoDB refusing the first put of each of these events' tracking logs (as too large, say): the
    workflow quarantines it and puts the log's bare facts instead, which DynamoDB takes."""
    refused: set[str] = set()

    def refuse(data: dict[str, Any]) -> str | None:
        event_id = data.get("event_id", {}).get("S")
        if "type" in data and event_id in event_ids and event_id not in refused:
            refused.add(event_id)
            return "ValidationException: Item size has exceeded the maximum allowed size"
        return None

    store.refuse = refuse


def _human_breakdowns(store: FakeWorkflowStore) -> dict[str, Any]:
    item = store.indicators[("d1", "stats")]
    return {
        "rows": {
            dimension: {name: {m: int(n) for m, n in row.items()} for name, row in rows.items()}
            for dimension, rows in item.human_breakdowns.as_dict().items()
        },
        "other": {
            dimension: {m: int(n) for m, n in row.items()}
            for dimension, row in item.human_other_breakdowns.as_dict().items()
        },
        "human": {k: int(v) for k, v in item.human.as_dict().items()},
        "machine": item.machine.as_dict(),
    }


def _quarantined_hits(store: FakeWorkflowStore) -> None:
    """r5's person's open in Chrome on Windows and click on an iPhone, and a bot's click, from the
    address that hits the honeypot at H, each within its 30 s window."""
    from tests.unit.test_workflow import IPHONE

    add(store, "q-open", "r5", None, H - timedelta(seconds=10), client="k5")
    add(store, "q-click", "r5", "1", H - timedelta(seconds=7), person="p5", client="k5", ua=IPHONE)
    add(store, "q-bot", "r5", "2", H - timedelta(seconds=5), person="p5", machine="bot", client="k5")


QUARANTINED = {"q-open", "q-click", "q-bot"}


def test_hits_whose_logs_were_quarantined_leave_the_human_breakdowns_they_were_counted_under() -> None:
    # Given a person's open and click and a bot's click, counted by a first run under their browser, OS
    # and device names, whose full tracking logs DynamoDB refused (their bare logs stand in for them)
    store = seeded_store()
    _refuse_each_first_put_of_these_logs(store, QUARANTINED)
    _quarantined_hits(store)
    clock = Clock(H - timedelta(seconds=1))
    first = workflow(store, clock).run("run-1", "schedule")
    assert int(first.quarantined) == len(QUARANTINED)
    before = _human_breakdowns(store)
    assert before["rows"]["browser"] == {
        "Chrome": {"opens": 1, "clicks": 0},
        "Mobile Safari": {"opens": 0, "clicks": 1},
    }
    assert before["rows"]["os"] == {"Windows": {"opens": 1, "clicks": 0}, "iOS": {"opens": 0, "clicks": 1}}
    assert before["rows"]["device"] == {
        "desktop": {"opens": 1, "clicks": 0},
        "mobile": {"opens": 0, "clicks": 1},
    }
    assert before["machine"]["by_kind"] == {"bot": 1}
    # When a honeypot hit from their address is consolidated by the next run
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then the human breakdowns, counts and machine kinds are what one run over every hit gives: each hit
    # taken off the names it was counted under, the bot's click moved from bot to scanner
    once = seeded_store()
    _refuse_each_first_put_of_these_logs(once, QUARANTINED)
    _quarantined_hits(once)
    honeypot(once)
    workflow(once, Clock(H + timedelta(hours=1))).run("run-1", "schedule")
    after = _human_breakdowns(store)
    assert after == _human_breakdowns(once)
    assert all(row == {"opens": 0, "clicks": 0} for rows in after["rows"].values() for row in rows.values())
    assert after["human"]["total_opens"] == after["human"]["total_clicks"] == 0
    assert after["machine"]["by_kind"] == {"scanner": 4}


def _three_opens_then_r5s(
    monkeypatch: pytest.MonkeyPatch, r5_user_agent: str, r5_url_id: str | None = None, r3_too: bool = False
) -> tuple[FakeWorkflowStore, Clock, dict[str, Any]]:
    """Room for one name per breakdown, a run counting three people's opens in Chrome (r2, r4, r6:
    example.org), and a second one r5's open (gmail.com), or click on ``r5_url_id``, with
    ``r5_user_agent``, from the address that hits the honeypot next (with ``r3_too``, and r3's open at
    gmail.com in Chrome from another address); the human breakdowns after them.
    (In one run, a batch could count r5's first hit before the opens and fold example.org instead.)"""
    from functions.consolidate import batch

    monkeypatch.setattr(batch, "MAX_BREAKDOWN_NAMES", 1)
    store = seeded_store()
    for n, recipient in enumerate(("r2", "r4", "r6")):
        add(
            store, f"person-{recipient}", recipient, None, H - timedelta(minutes=5, seconds=n), client=f"k{n}"
        )
    clock = Clock(H - timedelta(minutes=4))
    workflow(store, clock).run("run-0", "schedule")
    add(
        store,
        "r5-hit",
        "r5",
        r5_url_id,
        H - timedelta(seconds=10),
        person="p5" if r5_url_id else None,
        client="k5",
        ua=r5_user_agent,
    )
    if r3_too:
        add(store, "r3-open", "r3", None, H - timedelta(seconds=20), client="k3")
    clock.now = H - timedelta(seconds=1)
    workflow(store, clock).run("run-1", "schedule")
    return store, clock, _human_breakdowns(store)


def _after_a_honeypot_hit_in_the_next_run(store: FakeWorkflowStore, clock: Clock) -> dict[str, Any]:
    honeypot(store)
    clock.now = H + timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    return _human_breakdowns(store)


def test_a_later_honeypot_hit_takes_an_open_off_the_other_row_its_email_domain_was_folded_into(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given room for one email domain, a run counting three people's opens at example.org, and a second
    # one an open at gmail.com (r5's, from the address that hits the honeypot next), folded into "other"
    store, clock, before = _three_opens_then_r5s(monkeypatch, CHROME)
    assert before["rows"]["domain"] == {"example.org": {"opens": 3, "clicks": 0}}
    assert before["other"]["domain"] == {"opens": 1, "clicks": 0}
    # When a honeypot hit from r5's address is consolidated by the next run
    after = _after_a_honeypot_hit_in_the_next_run(store, clock)
    # Then r5's open is taken off the "other" row, where its domain's count is now, and nowhere else
    assert after["rows"]["domain"] == {"example.org": {"opens": 3, "clicks": 0}}
    assert after["other"]["domain"] == {"opens": 0, "clicks": 0}
    assert after["human"]["opens"] == 3


def test_a_later_honeypot_hit_takes_one_open_off_an_other_row_holding_two(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given room for one email domain, a run counting three people's opens at example.org, and a second
    # one two opens at gmail.com, r3's and r5's (from the address that hits the honeypot next), both
    # folded into "other"
    store, clock, before = _three_opens_then_r5s(monkeypatch, CHROME, r3_too=True)
    assert before["other"]["domain"] == {"opens": 2, "clicks": 0}
    # When a honeypot hit from r5's address is consolidated by the next run
    after = _after_a_honeypot_hit_in_the_next_run(store, clock)
    # Then only r5's open is taken off the "other" row: r3's stays
    assert after["other"]["domain"] == {"opens": 1, "clicks": 0}
    assert after["rows"]["domain"] == {"example.org": {"opens": 3, "clicks": 0}}


def test_a_persons_open_whose_user_agent_names_an_empty_browser_counts_under_unknown_in_both_breakdowns() -> (
    None
):
    # Given a person's open whose User-Agent gives the parser an empty browser name (nothing before
    # "/1.0 CFNetwork", as a crafted one may)
    store = seeded_store()
    add(store, "nameless", "r1", None, H, client="k1", ua="/1.0 CFNetwork/1 Darwin/1")
    # When it is consolidated
    workflow(store, Clock(H + timedelta(minutes=1))).run("run-1", "schedule")
    # Then the human breakdowns name its browser "Unknown", as the all-traffic ones do, and its OS and
    # device as the parser read them
    item = store.indicators[("d1", "stats")]
    every = {d: sorted(rows) for d, rows in item.breakdowns.as_dict().items() if d != "domain"}
    human = {d: sorted(rows) for d, rows in _human_breakdowns(store)["rows"].items() if d != "domain"}
    assert human == every == {"browser": ["Unknown"], "os": ["iOS"], "device": ["other"]}


def test_an_email_domain_longer_than_a_breakdown_name_may_be_is_counted_under_its_first_bytes() -> None:
    # Given a recipient whose message names an email domain of 298 bytes (as one stored before the API
    # cut domains to MAX_NAME_BYTES could), and the recipient's open
    store = seeded_store()
    domain = "d" * 290 + ".example"
    store.add_message(
        MessageModel(delivery_id="d1", sk="msg#r8", recipient_id="r8", email_domain=domain, rendered_at="x")
    )
    add(store, "long", "r8", None, H, client="k8")
    # When it is consolidated
    workflow(store, Clock(H + timedelta(minutes=1))).run("run-1", "schedule")
    # Then both domain breakdowns count it under the domain's first MAX_NAME_BYTES bytes
    item = store.indicators[("d1", "stats")]
    assert list(item.breakdowns.as_dict()["domain"]) == [domain[:MAX_NAME_BYTES]]
    assert list(_human_breakdowns(store)["rows"]["domain"]) == [domain[:MAX_NAME_BYTES]]


def test_a_later_honeypot_hit_takes_an_open_off_the_other_rows_its_browser_os_and_device_were_folded_into(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.test_workflow import IPHONE

    # Given room for one name per breakdown, a run counting three people's opens in Chrome on Windows
    # desktops, and a second one an open on an iPhone (r5's, from the address that hits the honeypot
    # next): Mobile Safari, iOS and mobile are folded into "other"
    store, clock, before = _three_opens_then_r5s(monkeypatch, IPHONE)
    assert {d: before["rows"][d] for d in ("browser", "os", "device")} == {
        "browser": {"Chrome": {"opens": 3, "clicks": 0}},
        "os": {"Windows": {"opens": 3, "clicks": 0}},
        "device": {"desktop": {"opens": 3, "clicks": 0}},
    }
    assert {d: before["other"][d] for d in ("browser", "os", "device")} == {
        d: {"opens": 1, "clicks": 0} for d in ("browser", "os", "device")
    }
    # When a honeypot hit from r5's address is consolidated by the next run
    after = _after_a_honeypot_hit_in_the_next_run(store, clock)
    # Then r5's open is taken off each "other" row, where its names' counts are now, and no row is added
    assert {d: after["rows"][d] for d in ("browser", "os", "device")} == {
        d: before["rows"][d] for d in ("browser", "os", "device")
    }
    assert {d: after["other"][d] for d in ("browser", "os", "device")} == {
        d: {"opens": 0, "clicks": 0} for d in ("browser", "os", "device")
    }
    assert after["human"]["total_opens"] == 3


def test_a_later_honeypot_hit_takes_a_click_off_the_other_rows_its_browser_os_device_and_domain_were_folded_into(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.test_workflow import IPHONE

    # Given room for one name per breakdown, a run counting three people's opens in Chrome on Windows
    # desktops at example.org, and a second one a click on an iPhone at gmail.com (r5's, from the address
    # that hits the honeypot next): Mobile Safari, iOS, mobile and gmail.com are folded into "other"
    store, clock, before = _three_opens_then_r5s(monkeypatch, IPHONE, r5_url_id="1")
    dimensions = ("browser", "os", "device", "domain")
    assert {d: before["other"][d] for d in dimensions} == {
        "browser": {"opens": 0, "clicks": 1},
        "os": {"opens": 0, "clicks": 1},
        "device": {"opens": 0, "clicks": 1},
        "domain": {"opens": 1, "clicks": 1},  # r5's first hit counts as an open at its domain too
    }
    # When a honeypot hit from r5's address is consolidated by the next run
    after = _after_a_honeypot_hit_in_the_next_run(store, clock)
    # Then r5's click is taken off each "other" row, where its names' counts are now, and no row is added
    assert {d: after["rows"][d] for d in dimensions} == {
        "browser": {"Chrome": {"opens": 3, "clicks": 0}},
        "os": {"Windows": {"opens": 3, "clicks": 0}},
        "device": {"desktop": {"opens": 3, "clicks": 0}},
        "domain": {"example.org": {"opens": 3, "clicks": 0}},
    }
    assert {d: after["other"][d] for d in dimensions} == {d: {"opens": 0, "clicks": 0} for d in dimensions}
    assert (after["human"]["total_clicks"], after["human"]["clicks"]) == (0, 0)
